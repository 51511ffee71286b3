"""The training loop: any registered method, one or many processes, exact resume.

``train(config, run_dir)`` builds the method from the recipe, trains it on batches of views,
labels and sample indices (:class:`seedzoo.training.methods.Batch`), and exports the networks of
``method.encoders()`` in timm's format: one to ``run_dir/encoder``, several each to
``run_dir/<name>``, with the classifier of ``method.classifiers()`` of the same name beside it
(``classifier.safetensors`` + ``classifier.json``). A run folder holds::

    config.yaml       the resolved recipe
    checkpoint.pt     the last checkpoint (every train.checkpoint_every_steps and each epoch end)
    metrics.jsonl     one JSON row per log interval and per epoch
    encoder/          the trained encoder (config.json + model.safetensors + card), at the end
    summary.json      configuration, wall time, steps, final loss, package versions

A single-process run stopped by SIGINT (Ctrl-C) or SIGTERM finishes its current step, writes a
checkpoint and raises :class:`TrainingStopped`; a second signal stops it at once. Under torchrun
the processes stop where they are and ``train.checkpoint_every_steps`` bounds what is lost.

Reproducibility: the augmentation of sample ``i`` in epoch ``e`` draws from a generator seeded
by ``(seed, e, i)`` and the order of an epoch depends only on ``(seed, e)``, so results do not
depend on the number of data workers, and a resumed run skips exactly the batches its
checkpoint has seen and ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import threading
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm.auto import tqdm

import seedzoo.training.methods  # noqa: F401 (registers the methods)
from seedzoo.data.datasets import dataset_classes, dataset_labels, get_dataset
from seedzoo.data.subsets import class_balanced_indices, subset_indices
from seedzoo.devices import resolve_device
from seedzoo.errors import CheckpointError, SeedzooError
from seedzoo.evaluation.features import dataset_features
from seedzoo.evaluation.knn import knn_classify
from seedzoo.files import exclusive_lock, write_text_atomic
from seedzoo.provenance import package_versions
from seedzoo.training import distributed
from seedzoo.training.checkpointing import (
    first_non_finite,
    gather_rng_states,
    largest_magnitude,
    load_checkpoint,
    restore_rng_states,
    save_checkpoint,
)
from seedzoo.training.config import Config, DataConfig, save_config
from seedzoo.training.methods.base import (
    Batch,
    Method,
    TrainingProgress,
    build_method,
    method_needs_labels,
    method_options,
    required_options,
)
from seedzoo.training.optim import WarmupCosineSchedule, build_optimizer, clip_gradients
from seedzoo.training.views import build_views
from seedzoo.zoo.card import write_card
from seedzoo.zoo.layout import (
    CHECKPOINT_METHOD_KEY,
    CHECKPOINT_NAME,
    ENCODER_DIR,
    LOCK_NAME,
    METRICS_NAME,
    PREVIOUS_CHECKPOINT_NAME,
    RUN_CONFIG_NAME,
    SUMMARY_NAME,
)
from seedzoo.zoo.pretrained import (
    MLPClassifier,
    save_classifier,
    save_pretrained,
    training_preprocessing,
)


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The seed of the augmentation of sample ``index`` in ``epoch`` (well mixed, 64 bits)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1, np.uint64)[0])


class SeededViews(Dataset):
    """A :class:`Batch` of one sample: the views of a labelled dataset's image, reproducibly
    augmented, its label and its index.

    Set :attr:`epoch` before creating a loader iterator (workers are forked from it).
    """

    def __init__(self, dataset: Dataset, views, seed: int):
        self.dataset, self.views, self.seed = dataset, views, seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Batch:
        image, label = self.dataset[index]
        generator = torch.default_generator  # views draw from it; seeding it alone is cheap
        state = generator.get_state()
        generator.manual_seed(sample_seed(self.seed, self.epoch, index))
        try:
            return Batch(self.views(image), label, index)
        finally:
            generator.set_state(state)


class PartlyLabelled(Dataset):
    """``images`` with the labels ``labels`` (-1: no label) and the class names ``classes``."""

    def __init__(self, images: Dataset, labels: np.ndarray, classes: list[str]):
        self.images, self.targets, self.classes = images, labels, classes

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index][0], int(self.targets[index])


def training_images(config: Config) -> Dataset:
    """The training split of ``data.dataset``, or the seeded subset of ``data.limit`` images that
    evaluation's ``--limit-train`` with the same seed reads; with ``data.label_fraction``, see
    :func:`labelled_images`."""
    dataset = get_dataset(config.data.dataset, "train", root=config.data.root)
    indices = subset_indices(len(dataset), config.data.limit, config.train.seed)
    if config.data.label_fraction is not None:
        return labelled_images(dataset, indices, config)
    return dataset if indices is None else Subset(dataset, indices.tolist())


def labelled_images(dataset: Dataset, indices: np.ndarray | None, config: Config) -> Dataset:
    """The ``data.label_fraction`` of the training images (``indices`` of ``dataset``, or all)
    whose labels are kept: the class-balanced seeded subset the few-shot protocol draws from the
    same images (:func:`seedzoo.data.subsets.class_balanced_indices`, seed ``train.seed``).

    Those images alone, or with ``data.keep_unlabelled`` all the images, the others with label -1.
    Every class must keep a labelled image.
    """
    fraction = config.data.label_fraction
    indices = np.arange(len(dataset)) if indices is None else indices
    labels, classes = dataset_labels(dataset)[indices], dataset_classes(dataset)
    if not classes or (labels < 0).any():
        raise SeedzooError(f"data.label_fraction keeps some of the labels, but data.dataset "
                           f"{config.data.dataset!r} has unlabelled images; use a labelled "
                           "dataset or drop data.label_fraction.")
    kept = class_balanced_indices(labels, fraction, config.train.seed)
    missing = sorted(set(range(len(classes))) - set(labels[kept].tolist()))
    if missing:
        names = ", ".join(repr(classes[c]) for c in missing)
        raise SeedzooError(f"data.label_fraction {fraction} of the {len(indices)} training images "
                           f"leaves no labelled image of class {names}: data.limit's subset holds "
                           "none. Raise data.limit (or set it to null).")
    if not config.data.keep_unlabelled:
        return Subset(dataset, indices[kept].tolist())
    partial = np.full(len(indices), -1, dtype=np.int64)
    partial[kept] = labels[kept]
    return PartlyLabelled(Subset(dataset, indices.tolist()), partial, classes)


def training_labels(images: Dataset) -> np.ndarray:
    """The labels of :func:`training_images`, without decoding images."""
    if isinstance(images, Subset):
        return dataset_labels(images.dataset)[images.indices]
    return dataset_labels(images)


def check_method_options(config: Config) -> None:
    """Fail clearly when the method section names options its builder does not take, or
    leaves out (or nulls) one it needs."""
    missing = [name for name in required_options(config.method_name)
               if config.method_options.get(name) is None]
    if missing:
        raise SeedzooError(f"Method {config.method_name!r} needs method.{missing[0]} in the "
                           f"recipe (required: {', '.join(required_options(config.method_name))}"
                           "); see the method's docstring for what it takes.")
    accepted = method_options(config.method_name)
    if accepted is None:
        return
    unknown = sorted(set(config.method_options) - set(accepted))
    if unknown:
        raise SeedzooError(f"Unknown key method.{unknown[0]} for method {config.method_name!r}. "
                           f"Valid keys of method: name, {', '.join(accepted)}.")


def build_method_from(config: Config, images: Dataset) -> Method:
    """The recipe's method, with the size and classes of the training ``images``. Checked first:
    the options, and the labels when the method declares it needs them."""
    check_method_options(config)
    classes = dataset_classes(images.dataset if isinstance(images, Subset) else images)
    if method_needs_labels(config.method_name, config.method_options) \
            and (not classes or (training_labels(images) < 0).any()):
        if config.data.keep_unlabelled:
            raise SeedzooError(f"Method {config.method_name!r} trains on every image's label, "
                               "but data.keep_unlabelled keeps images without one; set it to "
                               "false.")
        raise SeedzooError(f"Method {config.method_name!r} trains on labels, but data.dataset "
                           f"{config.data.dataset!r} has unlabelled images; use a labelled "
                           "dataset (class folders for imagefolder:<path>).")
    return build_method(config.method_name, dataset_size=len(images), num_classes=len(classes),
                        **config.method_options)


def set_training_preprocessing(encoder, data: DataConfig) -> None:
    """Record the training crops' size and normalisation as the encoder's ``pretrained_cfg``, so
    evaluation (and the exported ``config.json``) preprocesses images the same way."""
    encoder.pretrained_cfg = {**encoder.pretrained_cfg,
                              **training_preprocessing(dataclasses.asdict(data))}


def _select_device(name: str) -> torch.device:
    """``train.device`` (auto: CUDA when visible) checked, then set up for this process."""
    use_cuda = name == "auto" and torch.cuda.is_available() or \
        name != "auto" and resolve_device(name).type == "cuda"
    return distributed.init_from_env(use_cuda=use_cuda)


class TrainingStopped(KeyboardInterrupt):
    """A run stopped by a signal after writing the checkpoint of its last finished step."""

    def __init__(self, signum: int, step: int, run_dir: Path):
        super().__init__(f"{signal.Signals(signum).name} received: stopped after step {step} "
                         f"with its checkpoint written; continue with: seedzoo train --out "
                         f"{run_dir} --resume")
        self.exit_code = 128 + signum  # what a shell reports for a process killed by signum


class StopSignals:
    """Turns SIGINT and SIGTERM into a request (:attr:`received`) that the training loop
    honours at the next step boundary; a second signal interrupts at once. Only the main thread
    of a single process can install it; elsewhere signals keep their usual effect."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopSignals:
        self.received: int | None = None
        self.previous = {}
        if threading.current_thread() is threading.main_thread() \
                and not distributed.is_distributed():
            self.previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def _leave_stop_signals_to_the_trainer(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: workers ignore SIGINT and SIGTERM.

    Ctrl-C and schedulers signal the whole process group. A worker that died of the signal
    would make the main process raise in the middle of its step or checkpoint; this way the
    main process alone decides, and it stops its workers when it exits.
    """
    for signum in StopSignals.SIGNALS:
        signal.signal(signum, signal.SIG_IGN)


def _logged_step(line: str) -> float:
    """The step of a ``metrics.jsonl`` row; infinity for a line a killed run cut short."""
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf


class MetricsLog:
    """Rows of metrics appended to ``metrics.jsonl`` (and TensorBoard when installed)."""

    def __init__(self, run_dir: Path, resume_step: int):
        self.path = run_dir / METRICS_NAME
        if self.path.exists():  # drop rows a killed run logged after its last checkpoint
            rows = [line for line in self.path.read_text().splitlines()
                    if _logged_step(line) <= resume_step]
            write_text_atomic(self.path, "".join(row + "\n" for row in rows))
        try:
            from torch.utils.tensorboard import SummaryWriter
            self.tensorboard = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step)
        except ImportError:
            self.tensorboard = None

    def write(self, row: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.tensorboard is not None:
            for key, value in row.items():
                if key != "step" and isinstance(value, (int, float)):
                    self.tensorboard.add_scalar(key, value, row["step"])

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()


class Trainer:
    """One training run in ``run_dir`` (see the module docstring)."""

    def __init__(self, config: Config, run_dir: str | Path, device: torch.device):
        self.config, self.run_dir, self.device = config, Path(run_dir), device
        data, opt = config.data, config.train
        world = distributed.world_size()
        if data.batch_size % world:
            raise SeedzooError(f"data.batch_size {data.batch_size} (the global batch) is not "
                               f"divisible by the {world} processes.")
        if opt.precision == "fp16" and device.type != "cuda":
            raise SeedzooError("train.precision fp16 needs a CUDA GPU; use bf16 on CPU.")
        self.batch_size = data.batch_size // world

        images = training_images(config)
        torch.manual_seed(opt.seed)  # the same initial weights in every process
        self.method = build_method_from(config, images)
        if opt.sync_bn and world > 1:
            self.method = distributed.convert_sync_batchnorm(self.method, device)
        self.memory_format = torch.channels_last if opt.channels_last else torch.contiguous_format
        self.method.to(device, memory_format=self.memory_format)
        for encoder in self.method.encoders().values():
            set_training_preprocessing(encoder, data)
        self.classes = dataset_classes(images.dataset if isinstance(images, Subset) else images)
        self._check_classifiers()
        description = self.method.describe()
        if description is not None and distributed.is_main_process():
            print(description)
        torch.manual_seed(opt.seed + distributed.rank())  # e.g. dropout differs across processes

        views = build_views(data.views or self.method.views, image_size=data.image_size,
                            mean=data.mean, std=data.std,
                            **{**self.method.view_options, **data.view_options})
        self.method.check_views(views.transforms)  # before any training, not at the first step
        self.dataset = SeededViews(images, views, opt.seed)
        self.sampler = distributed.ResumableDistributedSampler(
            self.dataset, batch_size=self.batch_size, seed=opt.seed)
        self.loader = DataLoader(
            self.dataset, batch_size=self.batch_size, sampler=self.sampler,
            num_workers=data.workers, drop_last=data.drop_last, pin_memory=device.type == "cuda",
            worker_init_fn=_leave_stop_signals_to_the_trainer,
            generator=torch.Generator().manual_seed(opt.seed))  # leaves the global RNG alone
        self.steps_per_epoch = len(self.loader)
        if self.steps_per_epoch == 0:
            raise SeedzooError(f"{len(self.dataset)} training images make no full batch of "
                               f"{data.batch_size}; lower data.batch_size or set "
                               "data.drop_last=false.")
        self.total_steps = opt.epochs * self.steps_per_epoch

        self.lr = config.peak_lr()
        self.optimizer = build_optimizer(opt.optimizer, self.method, lr=self.lr,
                                         weight_decay=opt.weight_decay, momentum=opt.momentum,
                                         betas=opt.betas, plain=self.method.plain_parameters())
        self.scheduler = WarmupCosineSchedule(
            self.optimizer, total_steps=self.total_steps,
            warmup_steps=round(opt.warmup_epochs * self.steps_per_epoch),
            final_ratio=opt.min_lr / self.lr if self.lr else 0.0,
            weight_decay_end=opt.weight_decay_end)
        self.scaler = torch.amp.GradScaler(device.type, enabled=opt.precision == "fp16")
        self.autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(opt.precision)

        self.epoch = self.step_in_epoch = self.global_step = 0
        self.elapsed_s = 0.0                   # training time over all sessions of the run
        self.epoch_loss = [0.0, 0]             # sum and count of this epoch's losses
        self.final_loss: float | None = None   # mean loss of the last finished epoch
        self.kept: list[tuple[int, float]] = []  # (step, largest |value|) of the checkpoints kept
        self.model = self.method               # wrapped in DDP by fit()

    def _check_classifiers(self) -> None:
        """Each classifier of ``method.classifiers()`` belongs to an exported network of the
        same name and classifies the training data's classes."""
        encoders = self.method.encoders()
        for name, classifier in self.method.classifiers().items():
            if name not in encoders:
                raise SeedzooError(f"{type(self.method).__name__}.classifiers() names "
                                   f"{name!r}, which is not one of its encoders() "
                                   f"({', '.join(encoders)}); key each classifier like the "
                                   "network it classifies the features of.")
            if not isinstance(classifier, (torch.nn.Linear, MLPClassifier)):
                raise SeedzooError(f"{type(self.method).__name__}.classifiers()[{name!r}] is a "
                                   f"{type(classifier).__name__}; only nn.Linear and "
                                   "MLPClassifier heads are exported.")
            if self.classes and classifier.out_features != len(self.classes):
                raise SeedzooError(f"{type(self.method).__name__}.classifiers()[{name!r}] has "
                                   f"{classifier.out_features} outputs for data with "
                                   f"{len(self.classes)} classes.")

    # -- checkpoints --------------------------------------------------------------------------

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT_NAME

    def save(self) -> None:
        """Write the checkpoint, keeping the one before it (collective: every process contributes
        its RNG state). A state holding NaN or infinity anywhere is never written."""
        method_state, optimizer_state = self.method.state_dict(), self.optimizer.state_dict()
        bad = first_non_finite({"method": method_state, "optimizer": optimizer_state})
        if bad:
            self._stop_non_finite(f"{bad} is not finite after it", self.global_step)
        rng = gather_rng_states(self.device)
        if distributed.is_main_process():
            save_checkpoint({
                CHECKPOINT_METHOD_KEY: method_state,
                "optimizer": optimizer_state,
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": rng,
                "progress": {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                             "global_step": self.global_step, "elapsed_s": self.elapsed_s,
                             "epoch_loss": list(self.epoch_loss),
                             "final_loss": self.final_loss},
                "config": self.config.to_dict(),
            }, self.checkpoint_path, previous=self.run_dir / PREVIOUS_CHECKPOINT_NAME)
        self.kept = [*self.kept[-1:], (self.global_step, largest_magnitude(method_state))]

    def restore(self, state: dict) -> None:
        """Continue from a checkpoint: its weights, optimiser state, schedule position and RNG,
        with the current recipe's optimiser settings (weight decay, momentum, betas, lr)."""
        recipe = [{k: v for k, v in group.items() if k != "params"}
                  for group in self.optimizer.param_groups]
        try:
            self.method.load_state_dict(state[CHECKPOINT_METHOD_KEY])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(f"{self.checkpoint_path} does not fit this recipe's method "
                                  f"({error}). Resume with the recipe that started the run.") \
                from None
        for group, settings in zip(self.optimizer.param_groups, recipe, strict=True):
            group.update(settings)  # the checkpoint's were loaded with the state
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        progress = state["progress"]
        self.epoch, self.step_in_epoch = progress["epoch"], progress["step_in_epoch"]
        self.global_step, self.elapsed_s = progress["global_step"], progress["elapsed_s"]
        self.epoch_loss, self.final_loss = list(progress["epoch_loss"]), progress["final_loss"]
        self.kept = [(self.global_step, largest_magnitude(state[CHECKPOINT_METHOD_KEY]))]
        if not restore_rng_states(state["rng"], self.device):
            writers, world = state["rng"]["torch"].shape[0], distributed.world_size()
            warnings.warn(f"{self.checkpoint_path} was written by {writers} processes and is "
                          f"resumed by {world}: training continues, but its random draws differ "
                          "from those of an uninterrupted run.", stacklevel=2)
            torch.manual_seed(self.config.train.seed + self.global_step + distributed.rank())

    # -- the loop -----------------------------------------------------------------------------

    def fit(self) -> dict:
        """Train to the last epoch (or ``train.max_steps``), export, return the summary."""
        opt = self.config.train
        if distributed.is_distributed():
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.method, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False)  # queues are kept identical by all-gather, BN by sync
        main = distributed.is_main_process()
        self.log = MetricsLog(self.run_dir, self.global_step) if main else None
        try:
            with StopSignals() as self.stop_signals:
                while self.epoch < opt.epochs:
                    if not self.train_one_epoch():
                        if main:
                            print(f"Stopped after step {self.global_step} (train.max_steps); "
                                  f"continue with: seedzoo train --out {self.run_dir} --resume "
                                  "--set train.max_steps=null")
                        return self.summary(finished=False)
                    self.monitor_knn()
                summary = self.summary(finished=True)
                if main:
                    self.export(summary)
                return summary
        finally:
            if self.log is not None:
                self.log.close()

    def train_one_epoch(self) -> bool:
        """Train the rest of the current epoch; False when ``train.max_steps`` stopped it."""
        opt = self.config.train
        if opt.max_steps is not None and self.global_step >= opt.max_steps:
            return False  # a resumed run that had already reached it
        self.dataset.epoch = self.epoch
        self.sampler.set_epoch(self.epoch, skip_batches=self.step_in_epoch)
        self.method.train()
        main = distributed.is_main_process()
        bar = tqdm(total=self.steps_per_epoch, initial=self.step_in_epoch,
                   desc=f"epoch {self.epoch + 1}/{opt.epochs}", dynamic_ncols=True,
                   **({} if main else {"disable": True}))  # TQDM_DISABLE applies otherwise
        window: dict[str, float] = {}
        window_steps, window_images, window_start = 0, 0, time.perf_counter()
        step_start = time.perf_counter()
        for batch in self.loader:
            batch = batch.to(self.device, non_blocking=True, memory_format=self.memory_format)
            lr = self.optimizer.param_groups[0]["lr"]  # this step's lr
            metrics = self.train_step(batch)
            self.global_step += 1
            self.step_in_epoch += 1
            now = time.perf_counter()
            self.elapsed_s += now - step_start
            step_start = now
            images = len(batch.indices) * distributed.world_size()
            self.epoch_loss[0] += metrics["loss"]
            self.epoch_loss[1] += 1
            for key, value in metrics.items():
                window[key] = window.get(key, 0.0) + value
            window_steps, window_images = window_steps + 1, window_images + images
            bar.update()
            bar.set_postfix(loss=f"{metrics['loss']:.4f}", lr=f"{lr:.3g}",
                            img_s=f"{window_images / (now - window_start):.0f}")
            if main and (self.global_step % opt.log_every_steps == 0
                         or self.step_in_epoch == self.steps_per_epoch):
                self.log.write({"step": self.global_step,
                                "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
                                **{k: v / window_steps for k, v in window.items()},
                                "lr": lr, "img_per_s": window_images / (now - window_start)})
                window, window_steps, window_images, window_start = {}, 0, 0, now
            if self.stop_signals.received is not None:
                bar.close()
                self.save()
                raise TrainingStopped(self.stop_signals.received, self.global_step, self.run_dir)
            if self.step_in_epoch < self.steps_per_epoch:  # the epoch end saves anyway
                stop = opt.max_steps is not None and self.global_step >= opt.max_steps
                if stop or (opt.checkpoint_every_steps
                            and self.global_step % opt.checkpoint_every_steps == 0):
                    self.save()
                if stop:
                    bar.close()
                    return False
        bar.close()
        self.final_loss = self.epoch_loss[0] / max(1, self.epoch_loss[1])
        if main:
            self.log.write({"step": self.global_step, "epoch": self.epoch + 1,
                            "epoch_loss": self.final_loss})
        self.epoch, self.step_in_epoch, self.epoch_loss = self.epoch + 1, 0, [0.0, 0]
        self.save()
        return opt.max_steps is None or self.global_step < opt.max_steps

    def train_step(self, batch: Batch) -> dict[str, float]:
        """Forward, loss check, backward and update, with the method's step hooks around them;
        returns the metrics averaged over processes."""
        opt = self.config.train
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype)
                    if self.autocast_dtype is not None else nullcontext())
        self.method.start_step(TrainingProgress(self.global_step, self.total_steps,
                                                self.steps_per_epoch))
        with autocast:
            outputs = self.model(batch)
        names = sorted(outputs)
        values = distributed.all_reduce_mean(
            torch.stack([outputs[name].detach().float() for name in names])).tolist()
        metrics = dict(zip(names, values, strict=True))
        if not math.isfinite(metrics["loss"]):
            self._stop_non_finite(f"the loss is {metrics['loss']}", self.global_step + 1)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(outputs["loss"]).backward()
        if opt.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            clip_gradients(self.method.parameters(), opt.grad_clip, opt.grad_clip_mode)
        for parameter in self.method.frozen_parameters():
            parameter.grad = None  # the optimiser skips it: no update, no decay, no moments
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.method.finish_step()
        return metrics

    def _stop_non_finite(self, what: str, step: int):
        where = f"step {step} (epoch {self.epoch + 1} of {self.config.train.epochs})"
        fix = ("Lower the learning rate (train.lr or train.base_lr), set train.grad_clip, or use "
               "train.precision=fp32")
        if not self.kept:
            raise SeedzooError(f"Training stopped at {where}: {what}. No checkpoint had been "
                               f"written yet. {fix}, and start again.")
        names = [PREVIOUS_CHECKPOINT_NAME, CHECKPOINT_NAME][-len(self.kept):]
        kept = "; ".join(f"{self.run_dir / name} (step {step_}, largest |value| {scale:.3g})"
                         for name, (step_, scale) in zip(names, self.kept, strict=True))
        earlier = (f" If it fails again at once, the last checkpoint's weights were already "
                   f"diverging (compare the largest values): continue from the one before it "
                   f"with --resume-from {self.run_dir / PREVIOUS_CHECKPOINT_NAME}."
                   if len(self.kept) > 1 else "")
        raise SeedzooError(f"Training stopped at {where}: {what}. Kept, all finite: {kept}. "
                           f"{fix}, then continue with --resume.{earlier}")

    # -- monitoring and the end of a run ------------------------------------------------------

    def monitor_knn(self) -> None:
        """k-NN top-1 of each exported network every ``train.knn_monitor.every_epochs`` epochs
        (logged as ``knn_top1``, or ``knn_top1_<name>`` for several)."""
        monitor = self.config.train.knn_monitor
        if not monitor.every_epochs or self.epoch % monitor.every_epochs:
            return
        if distributed.is_main_process():
            encoders = self.method.encoders()
            several = len(encoders) > 1
            row = {"step": self.global_step, "epoch": self.epoch}
            for name, encoder in encoders.items():
                # Data loaders draw from the global RNG; the run must not notice the monitor.
                with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda"
                                           else []):
                    top1 = knn_top1(encoder, self.config, self.device)
                row[f"knn_top1_{name}" if several else "knn_top1"] = top1
                print(f"epoch {self.epoch}: k-NN top-1 {top1:.2f}%" + (f" ({name})" * several))
            self.log.write(row)
        self.method.train()

    def encoder_dirs(self) -> dict[str, Path]:
        """Where each network of ``method.encoders()`` is exported: ``run_dir/encoder`` for one,
        ``run_dir/<name>`` each for several."""
        names = list(self.method.encoders())
        if len(names) == 1:
            return {names[0]: self.run_dir / ENCODER_DIR}
        return {name: self.run_dir / name for name in names}

    def summary(self, *, finished: bool) -> dict:
        folders = {name: str(folder) for name, folder in self.encoder_dirs().items()}
        return {
            "finished": finished,
            "method": self.config.method_name,
            "epochs": self.epoch,
            "steps": self.global_step,
            "steps_per_epoch": self.steps_per_epoch,
            "final_loss": self.final_loss,
            "lr": self.lr,
            "world_size": distributed.world_size(),
            "device": str(self.device),
            "wall_time_s": round(self.elapsed_s, 1),
            "images_per_s": round(self.global_step * self.config.data.batch_size
                                  / max(self.elapsed_s, 1e-9), 1),
            "encoder": str(self.run_dir / ENCODER_DIR) if finished and len(folders) == 1 else None,
            "encoders": folders if finished else None,
            "config": self.config.to_dict(),
            "versions": package_versions(),
        }

    def export(self, summary: dict) -> None:
        """Write each exported network with its classifier, if any, and its card (its
        pretrained_cfg is the training preprocessing), then the summary."""
        encoders, classifiers = self.method.encoders(), self.method.classifiers()
        for name, folder in self.encoder_dirs().items():
            save_pretrained(encoders[name], folder)
            if name in classifiers:
                save_classifier(classifiers[name], folder, classes=self.classes or None)
            write_card(folder, run=summary)
        write_text_atomic(self.run_dir / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")


def knn_top1(encoder, config: Config, device: torch.device) -> float:
    """k-NN (k = ``train.knn_monitor.k``) top-1 accuracy in % of ``encoder`` on seeded subsets of
    the monitor dataset's train (memory) and test splits, with the training preprocessing."""
    monitor = config.train.knn_monitor
    dataset = monitor.dataset or config.data.dataset
    options = dict(spec="training", root=config.data.root, seed=config.train.seed, cache=None,
                   device=device, channels_last=config.train.channels_last, progress=False)
    train_x, train_y = dataset_features(encoder, dataset, "train", limit=monitor.train_limit,
                                        **options)
    test_x, test_y = dataset_features(encoder, dataset, "test", limit=monitor.test_limit,
                                      **options)
    predicted = knn_classify(train_x, train_y, test_x, k=monitor.k)
    return 100.0 * float((predicted == test_y).float().mean())


def _check_start(run_dir: Path, checkpoint: Path, resuming: bool) -> None:
    """A new run needs a folder without a checkpoint; a resumed one needs its checkpoint."""
    if not resuming and checkpoint.exists():
        raise SeedzooError(f"{run_dir} already holds a run ({CHECKPOINT_NAME}); continue it "
                           "with --resume or choose another --out.")
    if resuming and not checkpoint.is_file():
        raise SeedzooError(f"Nothing to resume: {checkpoint} does not exist. Start a new run "
                           "without --resume (or give the run folder that holds it).")


def train(config: Config, run_dir: str | Path, *, resume: bool = False,
          resume_from: str | Path | None = None) -> dict:
    """Train ``config`` in ``run_dir``; returns the run summary. ``resume`` continues from the
    folder's last checkpoint, ``resume_from`` from a given one (e.g. ``checkpoint.prev.pt``).
    The run folder is locked while it trains. Under ``torchrun`` every process calls this."""
    run_dir = Path(run_dir)
    resuming = resume or resume_from is not None
    checkpoint = Path(resume_from) if resume_from is not None else run_dir / CHECKPOINT_NAME
    _check_start(run_dir, checkpoint, resuming)  # before the work of building the method
    device = _select_device(config.train.device)
    try:
        trainer = Trainer(config, run_dir, device)  # writes nothing
        main = distributed.is_main_process()
        if main:
            run_dir.mkdir(parents=True, exist_ok=True)
        with exclusive_lock(run_dir / LOCK_NAME, f"The run folder {run_dir}") if main \
                else nullcontext():
            _check_start(run_dir, checkpoint, resuming)  # again: another run may have started
            if resuming:
                trainer.restore(load_checkpoint(checkpoint))
                if main:
                    print(f"Resuming {run_dir} from {checkpoint.name} at step "
                          f"{trainer.global_step} (epoch {trainer.epoch + 1}, batch "
                          f"{trainer.step_in_epoch + 1}).")
            if main:
                save_config(config, run_dir / RUN_CONFIG_NAME)
            return trainer.fit()
    finally:
        distributed.shutdown()
