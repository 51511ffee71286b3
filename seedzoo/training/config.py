"""Training recipes: YAML files with a ``method``, a ``data`` and a ``train`` section.

```yaml
method: {name: seed, teacher: ..., queue_size: 16384}   # passed to build_method(name, **options)
data: {dataset: fashion-mnist, image_size: 32, batch_size: 128, limit: 10000}
train: {epochs: 10, optimizer: sgd, base_lr: 0.03, warmup_epochs: 1}
```

Every value can be overridden with ``--set section.key=value`` (the value is read as YAML, so
``--set train.lr=0.1``, ``--set data.limit=null``, ``--set data.mean=[0.5,0.5,0.5]``). Keys that
are not in the schema below are an error listing the valid ones; the ``method`` section is
checked against the method's own builder when the method is built.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from seedzoo.errors import SeedzooError
from seedzoo.files import dump_yaml, load_yaml, write_text_atomic
from seedzoo.zoo.layout import RUN_CONFIG_NAME

OPTIMIZERS = ("sgd", "adamw", "lars")
PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
GRAD_CLIP_MODES = ("global", "per_parameter")


@dataclass
class DataConfig:
    """What the encoder is trained on and how a batch is made."""

    dataset: str = "fashion-mnist"        # any name `seedzoo.evaluation.get_dataset` knows
    root: str | None = None               # data root (default: $SEEDZOO_DATA_ROOT or ./data)
    image_size: int = 32                  # side of the training crops, in pixels
    mean: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    std: list[float] = field(default_factory=lambda: [0.5, 0.5, 0.5])
    crop_pct: float = 1.0                 # evaluation centre crop recorded with the encoder
    views: str | None = None              # view recipe; null = the method's default
    view_options: dict = field(default_factory=dict)  # extra options of the view recipe
    batch_size: int = 256                 # global batch, split evenly across processes
    workers: int = 2                      # data-loading processes per training process
    limit: int | None = None              # train on a seeded random subset of this many images
    label_fraction: float | None = None   # keep the labels of this class-balanced seeded fraction
    #                                       (the few-shot protocol's 1% / 10% subsets) and train
    #                                       on those images alone, unless keep_unlabelled
    keep_unlabelled: bool = False         # with label_fraction: also train on the other images,
    #                                       without their labels (label -1)
    drop_last: bool = True                # drop the short last batch of each epoch


@dataclass
class KnnMonitorConfig:
    """k-NN accuracy of the encoder on a labelled split, every few epochs (0 = off)."""

    every_epochs: int = 0
    dataset: str | None = None            # null = data.dataset
    train_limit: int = 2000               # labelled images used as the k-NN memory
    test_limit: int = 1000                # images classified
    k: int = 20


@dataclass
class TrainConfig:
    """Optimisation, precision, checkpoints and seeds."""

    epochs: int = 200
    optimizer: str = "sgd"                # sgd | adamw | lars
    lr: float | None = None               # absolute peak lr; null = base_lr * batch_size / 256
    base_lr: float = 0.03
    min_lr: float = 0.0                   # lr at the end of the cosine
    weight_decay: float = 1e-4            # never applied to norms and biases
    weight_decay_end: float | None = None  # cosine from weight_decay to this; null = constant
    momentum: float = 0.9                 # sgd and lars
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])  # adamw
    warmup_epochs: float = 0.0            # linear warm-up, then cosine decay, per step
    grad_clip: float | None = None        # max gradient norm
    grad_clip_mode: str = "global"        # global: all gradients' norm | per_parameter: each
                                          # parameter's own (DINO's and EsViT's clip_gradients)
    precision: str = "fp32"               # fp32 | bf16 (CPU or CUDA) | fp16 (CUDA)
    sync_bn: bool = False                 # synchronise BatchNorm statistics across processes
    channels_last: bool = True            # channels-last weights and images (faster convolutions)
    checkpoint_every_steps: int = 500     # also written at every epoch end; 0 = epoch ends only
    log_every_steps: int = 10
    max_steps: int | None = None          # stop (resumably) after this many steps in all
    seed: int = 0
    device: str = "auto"                  # auto | cpu | cuda
    knn_monitor: KnnMonitorConfig = field(default_factory=KnnMonitorConfig)


@dataclass
class Config:
    method: dict = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def method_name(self) -> str:
        return self.method["name"]

    @property
    def method_options(self) -> dict:
        return {k: v for k, v in self.method.items() if k != "name"}

    def peak_lr(self) -> float:
        """``train.lr``, or the linear scaling rule ``base_lr * global batch / 256``."""
        if self.train.lr is not None:
            return self.train.lr
        return self.train.base_lr * self.data.batch_size / 256

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _check_choice(value, choices, where: str) -> None:
    if value not in choices:
        raise SeedzooError(f"{where} is {value!r}; use one of {', '.join(choices)}.")


def validate(config: Config) -> Config:
    if "name" not in config.method:
        raise SeedzooError("The recipe's method section needs a name (e.g. method: {name: seed}).")
    _check_choice(config.train.optimizer, OPTIMIZERS, "train.optimizer")
    _check_choice(config.train.precision, PRECISIONS, "train.precision")
    _check_choice(config.train.device, DEVICES, "train.device")
    _check_choice(config.train.grad_clip_mode, GRAD_CLIP_MODES, "train.grad_clip_mode")
    train = config.train
    for where, value in (("data.image_size", config.data.image_size),
                         ("data.batch_size", config.data.batch_size),
                         ("train.epochs", train.epochs),
                         ("train.log_every_steps", train.log_every_steps),
                         ("train.max_steps", train.max_steps)):
        if value is not None and value < 1:
            raise SeedzooError(f"{where} must be at least 1, got {value}.")
    for where, value in (("data.workers", config.data.workers),
                         ("train.warmup_epochs", train.warmup_epochs),
                         ("train.checkpoint_every_steps", train.checkpoint_every_steps),
                         ("train.knn_monitor.every_epochs", train.knn_monitor.every_epochs)):
        if value < 0:
            raise SeedzooError(f"{where} must not be negative, got {value}.")
    if train.grad_clip is not None and train.grad_clip <= 0:
        raise SeedzooError(f"train.grad_clip must be positive or null, got {train.grad_clip}.")
    for where, value in (("data.mean", config.data.mean), ("data.std", config.data.std)):
        if len(value) != 3:
            raise SeedzooError(f"{where} needs 3 values (R, G, B), got {value}.")
    if any(not math.isfinite(v) for v in config.data.mean) or min(config.data.std) <= 0 \
            or any(not math.isfinite(v) for v in config.data.std):
        raise SeedzooError(f"data.mean must be finite and data.std positive, got mean "
                           f"{config.data.mean} and std {config.data.std}.")
    for where, value in (("train.lr", train.lr), ("train.base_lr", train.base_lr),
                         ("train.min_lr", train.min_lr),
                         ("train.weight_decay", train.weight_decay),
                         ("train.weight_decay_end", train.weight_decay_end)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise SeedzooError(f"{where} must be a finite number >= 0, got {value}.")
    if train.weight_decay_end is not None and train.weight_decay == 0:
        raise SeedzooError("train.weight_decay_end schedules the weight decay from "
                           "train.weight_decay, which is 0; set train.weight_decay > 0 (the "
                           "schedule's start) or train.weight_decay_end=null.")
    for where, value in (("train.momentum", train.momentum), *(
            (f"train.betas[{i}]", beta) for i, beta in enumerate(train.betas))):
        if not 0 <= value < 1:
            raise SeedzooError(f"{where} must be in [0, 1), got {value}.")
    if len(train.betas) != 2:
        raise SeedzooError(f"train.betas needs 2 values, got {train.betas}.")
    if not 0 < config.data.crop_pct <= 1:
        raise SeedzooError(f"data.crop_pct must be in (0, 1], got {config.data.crop_pct}.")
    if config.data.limit is not None and config.data.limit < 1:
        raise SeedzooError(f"data.limit must be at least 1 or null, got {config.data.limit}.")
    fraction = config.data.label_fraction
    if fraction is not None and not 0 < fraction <= 1:
        raise SeedzooError(f"data.label_fraction must be in (0, 1] or null, got {fraction}.")
    if config.data.keep_unlabelled and fraction is None:
        raise SeedzooError("data.keep_unlabelled keeps the images data.label_fraction leaves "
                           "without a label; set data.label_fraction too (or drop it).")
    return config


# ---------------------------------------------------------------------------------------------
# dict <-> dataclasses, with clear errors


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value, hint, where: str):
    """Check ``value`` against the type ``hint`` of a schema field (ints pass as floats)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise SeedzooError(f"{where} must be a list, got {value!r}.")
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise SeedzooError(f"{where} must be a mapping, got {value!r}.")
        return dict(value)
    if dataclasses.is_dataclass(hint):
        return _from_dict(hint, value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, hint) or (isinstance(value, bool) and hint is not bool):
        raise SeedzooError(f"{where} must be {_type_name(hint)}, got {value!r}.")
    return value


def _from_dict(cls, values, where: str):
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise SeedzooError(f"{where or 'The recipe'} must be a mapping of keys to values, "
                           f"got {values!r}.")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        prefix = f"{where}." if where else ""
        raise SeedzooError(f"Unknown key {prefix}{unknown[0]} in the recipe. Valid keys"
                           f"{' of ' + where if where else ''}: {', '.join(names)}.")
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}" if where else k) for k, v in values.items()}
    return cls(**kwargs)


def config_from_dict(values: dict) -> Config:
    """A validated :class:`Config` from nested dicts (missing keys take their defaults)."""
    return validate(_from_dict(Config, values, ""))


# ---------------------------------------------------------------------------------------------
# files and overrides


def parse_override(text: str) -> tuple[list[str], object]:
    """``"train.lr=0.1"`` -> ``(["train", "lr"], 0.1)``; the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SeedzooError(f"--set expects section.key=value, got {text!r}.")
    try:
        value = load_yaml(raw)
    except yaml.YAMLError as error:
        raise SeedzooError(f"--set {text!r}: the value is not valid YAML ({error}).") from None
    return key.strip().split("."), value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Set each ``section.key=value`` of ``overrides`` in the nested dict ``values`` (a copy)."""
    values = yaml.safe_load(yaml.safe_dump(values))  # deep copy of plain data
    for text in overrides:
        path, value = parse_override(text)
        node = values
        for i, part in enumerate(path[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SeedzooError(f"--set {text!r}: {'.'.join(path[:i + 1])} is a value, "
                                   "not a section.")
            node = child
        node[path[-1]] = value
    return values


def read_yaml(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise SeedzooError(f"Recipe {path} does not exist.")
    try:
        values = load_yaml(path.read_text())
    except yaml.YAMLError as error:
        raise SeedzooError(f"Recipe {path} is not valid YAML: {error}") from None
    return values or {}


def load_config(path: str | os.PathLike, overrides: list[str] = ()) -> Config:
    """Read the recipe at ``path`` and apply ``--set`` style ``overrides``."""
    return config_from_dict(apply_overrides(read_yaml(path), list(overrides)))


def save_config(config: Config, path: str | os.PathLike) -> None:
    """Write the resolved recipe (every key, defaults included) as YAML, atomically."""
    write_text_atomic(path, dump_yaml(config.to_dict()))


def config_differences(old: Config, new: Config, ignore: tuple[str, ...] = ()) -> list[str]:
    """``key: old -> new`` for every leaf value that differs between two configs, but those
    whose key starts with one of ``ignore``."""
    def leaves(values, prefix=""):
        for key, value in values.items():
            if isinstance(value, dict) and value and key != "view_options":
                yield from leaves(value, f"{prefix}{key}.")
            else:
                yield f"{prefix}{key}", value
    before, after = dict(leaves(old.to_dict())), dict(leaves(new.to_dict()))
    return [f"{k}: {before.get(k)!r} -> {after.get(k)!r}"
            for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k) and not k.startswith(ignore)]


def run_config(recipe: str | os.PathLike | None, overrides: list[str], run_dir: Path, *,
               resume: bool) -> tuple[Config, list[str]]:
    """The config of a (new or resumed) run and its differences from the run's saved config.

    ``recipe`` (plus ``overrides``) wins; resuming without one reuses ``run_dir/config.yaml``.
    """
    saved = Path(run_dir) / RUN_CONFIG_NAME
    if recipe is None and not (resume and saved.is_file()):
        raise SeedzooError(f"Give a recipe with --config (or --resume a run folder holding "
                           f"{RUN_CONFIG_NAME}; {run_dir} has none).")
    config = config_from_dict(apply_overrides(read_yaml(recipe or saved), list(overrides)))
    changes = config_differences(config_from_dict(read_yaml(saved)), config) \
        if resume and saved.is_file() else []
    return config, changes
