"""Training: losses, metrics, the training and distillation loops, self-supervised pre-training."""
