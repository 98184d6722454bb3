"""Batched per-sample image augmentation on the training device (solo-learn's yaml schema)."""

from solo_sqsp.augment.config import (
    IMAGENET_MEAN_STD,
    AugmentConfigError,
    AugmentSpec,
)
from solo_sqsp.augment.pipeline import BatchAugment

__all__ = [
    "IMAGENET_MEAN_STD",
    "AugmentConfigError",
    "AugmentSpec",
    "BatchAugment",
]
