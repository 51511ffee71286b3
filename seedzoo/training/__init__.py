"""Training small encoders: views, methods (SimCLR, MoCo v2, SEED, supervised, KD), teachers,
the trainer."""

from seedzoo.training.teachers import load_backbone, load_classifier_teacher

__all__ = ["load_backbone", "load_classifier_teacher"]
