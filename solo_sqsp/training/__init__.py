"""A pretraining run: entry point, checks before it, checkpoints, logs and Trainer settings."""
