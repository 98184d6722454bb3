"""Optimisers and learning-rate schedules shared by pretraining and linear evaluation."""
