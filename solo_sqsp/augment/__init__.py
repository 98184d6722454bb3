"""Batched image augmentation on the training device, parameters drawn per sample (or per batch,
as the paper's reference code), in solo-learn's yaml schema."""

from solo_sqsp.augment.config import (
    IMAGENET_MEAN_STD,
    AugmentConfigError,
    AugmentSpec,
)
from solo_sqsp.augment.pipeline import AUGMENT_MODES, BatchAugment

__all__ = [
    "AUGMENT_MODES",
    "IMAGENET_MEAN_STD",
    "AugmentConfigError",
    "AugmentSpec",
    "BatchAugment",
]
