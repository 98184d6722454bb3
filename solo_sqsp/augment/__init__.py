"""Batched per-sample image augmentation on the training device (solo-learn's yaml schema)."""

from solo_sqsp.augment.config import (
    DATASET_MEAN_STD,
    IMAGENET_MEAN_STD,
    AugmentConfigError,
    AugmentSpec,
)
from solo_sqsp.augment.pipeline import BatchAugment

__all__ = [
    "DATASET_MEAN_STD",
    "IMAGENET_MEAN_STD",
    "AugmentConfigError",
    "AugmentSpec",
    "BatchAugment",
]
