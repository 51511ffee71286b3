"""A network that outputs logits, scored as a classifier: top-1 and top-5 on a test split.

The ``classifier`` protocol scores the linear classifier a run trained beside its encoder
(``classifier.safetensors``, written by ``supervised`` and ``kd`` runs) or an ONNX file exported
with it (``seedzoo export --with-classifier``); the ``finetune`` protocol scores its fine-tuned
networks the same way.

    model = classifier_model(load_encoder("runs/sup/encoder"), "runs/sup/encoder", "digits")
    classifier_scores(model, "digits", spec="runs/sup/encoder")   # {"top1", "top5", ...}
"""

from __future__ import annotations

from torch import nn

from seedzoo.data.datasets import dataset_classes, get_dataset
from seedzoo.deploy.runtime import OrtEncoder
from seedzoo.errors import SeedzooError
from seedzoo.evaluation.features import dataset_features
from seedzoo.evaluation.linear import topk_accuracy
from seedzoo.evaluation.pixels import PixelEncoder
from seedzoo.zoo.loading import classifier_for
from seedzoo.zoo.pretrained import EncoderClassifier


def classifier_model(model: nn.Module, spec: str, dataset: str, *, root=None,
                     classifier: nn.Linear | None = None) -> nn.Module:
    """The network the ``classifier`` protocol scores, checked against ``dataset``'s classes.

    A model that already outputs logits (an :class:`EncoderClassifier`, an ONNX file exported
    with its classifier) is scored as it is; a torch encoder gets ``classifier``, by default
    the one kept beside the encoder folder ``spec`` names. A classifier of another class count
    than ``dataset`` (or other class names, when both are known) is refused.
    """
    if isinstance(model, PixelEncoder):
        raise SeedzooError("pixels (the raw-pixel baseline) has no classifier. The classifier "
                           "protocol scores the classifier kept beside an encoder folder of a "
                           "supervised or kd run: give that folder as the model.")
    if isinstance(model, OrtEncoder) and not model.num_classes:
        raise SeedzooError(f"{model.path} outputs features, not logits. Export the encoder "
                           "folder with its classifier (seedzoo export --model <folder> "
                           "--with-classifier) to score the file as a classifier, or evaluate "
                           "the folder itself.")
    if not getattr(model, "num_classes", 0):
        model = EncoderClassifier(model, classifier if classifier is not None
                                  else classifier_for(spec))
    check_classes(model, dataset, root=root)
    return model


def check_classes(model: nn.Module, dataset: str, *, root=None) -> None:
    """A :class:`SeedzooError` unless ``model``'s logits are ``dataset``'s classes: the same
    count, and the same names in the same order when both sides name them."""
    classes = dataset_classes(get_dataset(dataset, "test", root=root))
    if not classes:
        return
    if model.num_classes != len(classes):
        raise SeedzooError(f"The classifier has {model.num_classes} classes, but {dataset} has "
                           f"{len(classes)}: it was trained on other data. Score it on the "
                           "dataset its run trained on.")
    names = getattr(model, "classes", None)
    if names is not None and [str(c) for c in names] != [str(c) for c in classes]:
        first = next(i for i, (a, b) in enumerate(zip(names, classes, strict=True))
                     if str(a) != str(b))
        raise SeedzooError(f"The classifier calls class {first} {names[first]!r}, but {dataset} "
                           f"calls it {classes[first]!r}: it was trained on other data (or "
                           "another class order). Score it on the dataset its run trained on.")


def classifier_scores(model: nn.Module, dataset: str, *, spec: str, root=None,
                      limit: int | None = None, seed: int = 0, **extract_options) -> dict:
    """Top-1 and top-5 of ``model``'s logits on the test split of ``dataset`` (a seeded
    ``limit`` of it, as ``--limit-test`` picks): ``{"top1", "top5", "test_size"}``.
    ``extract_options`` go to :func:`~seedzoo.evaluation.features.extract_features`."""
    logits, labels = dataset_features(model, dataset, "test", spec=spec, root=root, limit=limit,
                                      seed=seed, cache=None, **extract_options)
    return {"top1": topk_accuracy(logits, labels, 1), "top5": topk_accuracy(logits, labels, 5),
            "test_size": len(labels)}
