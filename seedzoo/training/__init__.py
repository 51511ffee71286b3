"""Training small encoders: views, methods (SimCLR, MoCo v2, SEED), teachers, the trainer."""

from seedzoo.training.teachers import load_backbone

__all__ = ["load_backbone"]
