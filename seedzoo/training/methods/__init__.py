"""Training methods, one module each; importing this package registers them all."""

from seedzoo.training.methods import moco, seed, simclr  # noqa: F401  (registers the methods)
from seedzoo.training.methods.base import (
    Method,
    build_method,
    list_methods,
    register_method,
)

__all__ = ["Method", "build_method", "list_methods", "register_method"]
