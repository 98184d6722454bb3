"""``data.fraction``: keep a class-stratified fraction of the pretraining split, as solo-learn does.

solo-learn draws the kept items with scikit-learn's ``train_test_split(train_size=fraction,
stratify=labels, random_state=42)`` on image-folder samples (unstratified for unlabeled
folders); the same draw is applied here, in place, to every storage layout the registry's readers
use, so CIFAR and STL10 (where solo-learn's version fails) subsample too, and item indexes stay in
``range(len(dataset))``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from solo_sqsp.data.errors import DataConfigError

SPLIT_SEED = 42


def check_fraction(fraction: float) -> None:
    """``fraction`` <= 0 keeps all; 0 < fraction < 1 subsamples; anything else is an error."""
    if not isinstance(fraction, (int, float)) or isinstance(fraction, bool) or fraction >= 1:
        raise DataConfigError(
            f"data.fraction={fraction!r}: expected a number below 1 (0.1 keeps 10% of the "
            "training images, stratified by class). Fix: set data.fraction=-1 to use all of them"
        )


def _kept_indices(num_items: int, fraction: float, labels: Sequence[int] | None) -> np.ndarray:
    try:
        kept, _ = train_test_split(
            np.arange(num_items), train_size=fraction, stratify=labels, random_state=SPLIT_SEED
        )
    except ValueError as error:
        raise DataConfigError(
            f"data.fraction={fraction}: cannot keep that fraction of {num_items} training images "
            f"with every class represented ({error}). Fix: raise data.fraction, or set it to -1"
        ) from error
    return kept


def subsample(dataset: Dataset, fraction: float) -> None:
    """Keep ``fraction`` of ``dataset``'s items in place (nothing when ``fraction`` <= 0)."""
    check_fraction(fraction)
    if fraction <= 0:
        return
    if hasattr(dataset, "samples"):  # torchvision image folders
        labels = [target for _, target in dataset.samples]
        kept = _kept_indices(len(labels), fraction, labels)
        dataset.samples = [dataset.samples[i] for i in kept]
        dataset.targets = [target for _, target in dataset.samples]
        if hasattr(dataset, "imgs"):
            dataset.imgs = dataset.samples
    elif hasattr(dataset, "data") and hasattr(dataset, "targets"):  # CIFAR-10/100
        kept = _kept_indices(len(dataset.targets), fraction, dataset.targets)
        dataset.data = dataset.data[kept]
        dataset.targets = [dataset.targets[i] for i in kept]
    elif hasattr(dataset, "data") and hasattr(dataset, "labels"):  # STL10 (-1: unlabeled)
        kept = _kept_indices(len(dataset.labels), fraction, dataset.labels)
        dataset.data = dataset.data[kept]
        dataset.labels = dataset.labels[kept]
    elif hasattr(dataset, "images"):  # flat folders of unlabeled images
        kept = _kept_indices(len(dataset.images), fraction, None)
        dataset.images = [dataset.images[i] for i in kept]
    else:
        raise DataConfigError(
            f"data.fraction={fraction}: {type(dataset).__name__} keeps its items in no layout "
            "known for subsampling (samples; data with targets or labels; images). Fix: set "
            "data.fraction=-1"
        )
