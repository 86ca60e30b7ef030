"""Training: arguments, the DistillationTrainer, model building and the end-to-end stage runner."""
