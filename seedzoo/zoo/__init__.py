"""Published models: the timm/Hub folder format, loading by spec, hub publish/pull, the catalog."""

from seedzoo.zoo.card import write_card
from seedzoo.zoo.catalog import list_models
from seedzoo.zoo.hub import download, publish, publish_to_cache, push
from seedzoo.zoo.loading import classifier_for, load
from seedzoo.zoo.pretrained import (
           EncoderClassifier,
           MLPClassifier,
           create_encoder,
           load_classifier,
           load_pretrained_folder,
           save_classifier,
           save_pretrained,
)

__all__ = ["load", "list_models", "create_encoder", "load_pretrained_folder", "save_pretrained",
           "save_classifier", "load_classifier", "MLPClassifier", "EncoderClassifier",
           "classifier_for", "write_card", "push", "publish", "publish_to_cache", "download"]
