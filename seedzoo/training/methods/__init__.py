"""Training methods, one module each; importing this package registers them all."""

from seedzoo.training.methods import crd, moco, seed, simclr  # noqa: F401  (registers the methods)
from seedzoo.training.methods.base import (
    Batch,
    Method,
    build_method,
    list_methods,
    method_builder,
    method_options,
    register_method,
)

__all__ = ["Batch", "Method", "build_method", "list_methods", "method_builder", "method_options",
           "register_method"]
