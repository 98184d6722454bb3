"""Real data for pretraining and evaluation: dataset registry, checks, augmentations, loaders.

``active_backend()`` says whether solo-learn's own data pieces are in use ("solo-learn") or this
package's torchvision equivalents ("builtin"); the API is the same either way.
"""

from solo_sqsp.data import digits  # noqa: F401  (registers data.dataset=digits)
from solo_sqsp.data.backend import active_backend
from solo_sqsp.data.datasets import (
    DATASETS,
    DatasetBuilder,
    IndexedDataset,
    Normalization,
    register_dataset,
)
from solo_sqsp.data.errors import DataConfigError
from solo_sqsp.data.loaders import (
    in_order,
    make_classification_dataloaders,
    make_pretrain_dataloader,
)
from solo_sqsp.data.transforms import (
    make_classification_transforms,
    make_pretrain_transform,
    pretrain_normalization,
)
from solo_sqsp.data.validation import has_validation_split, validate_data_cfg

__all__ = [
    "DATASETS",
    "DataConfigError",
    "DatasetBuilder",
    "IndexedDataset",
    "Normalization",
    "active_backend",
    "has_validation_split",
    "in_order",
    "make_classification_dataloaders",
    "make_classification_transforms",
    "make_pretrain_dataloader",
    "make_pretrain_transform",
    "pretrain_normalization",
    "register_dataset",
    "validate_data_cfg",
]
