"""Training small encoders: views, methods (SimCLR, MoCo v2, SEED), teachers, the trainer."""
