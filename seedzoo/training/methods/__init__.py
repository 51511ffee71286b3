"""Training methods, one module each; importing this package registers them all."""

from seedzoo.training.methods import (  # noqa: F401  (registers the methods)
    crd,
    dogo,
    esvit,
    finetune,
    kd,
    moco,
    seed,
    simclr,
    simclrv2_distill,
    supervised,
)
from seedzoo.training.methods.base import (
    Batch,
    Method,
    TrainingProgress,
    build_method,
    list_methods,
    method_builder,
    method_needs_labels,
    method_options,
    register_method,
)

__all__ = ["Batch", "Method", "TrainingProgress", "build_method", "list_methods",
           "method_builder", "method_needs_labels", "method_options", "register_method"]
