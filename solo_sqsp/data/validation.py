"""Check the data side of a config before any training: keys, augmentations, files on disk.

Runs in seconds (folder listings, file sizes, CIFAR's checksums) and stops at the first problem
with one :class:`DataConfigError` that names the key or path looked at, what was expected there,
and the fix.
"""

from __future__ import annotations

from typing import Literal

from omegaconf import DictConfig

from solo_sqsp.config import omegaconf_select
from solo_sqsp.data.datasets import DatasetBuilder, dataset_builder
from solo_sqsp.data.errors import DataConfigError
from solo_sqsp.data.subsample import check_fraction
from solo_sqsp.data.transforms import check_augmentations, eval_grayscale

Stage = Literal["pretrain", "classification"]
SUPPORTED_FORMAT = "image_folder"
UNSUPPORTED_FORMATS = {
    "h5": (
        "solo-learn's HDF5 datasets are not read here. Fix: extract the images into an "
        "image-folder tree (<path>/<class>/<image>) and set data.format=image_folder"
    ),
    "dali": (
        "NVIDIA DALI loaders are not wired up here (DALI needs a GPU and is not on the package "
        "index). Fix: set data.format=image_folder; the torchvision loaders read the same folders"
    ),
}


def check_data_keys(cfg: DictConfig) -> DatasetBuilder:
    """Check ``data.dataset``, ``data.format``, ``data.fraction``, ``data.num_workers``,
    ``data.no_labels``, ``data.eval_grayscale``; return the dataset's builder."""
    builder = dataset_builder(cfg)
    data_format = omegaconf_select(cfg, "data.format", SUPPORTED_FORMAT)
    if data_format in UNSUPPORTED_FORMATS:
        raise DataConfigError(
            f"data.format={data_format!r} is not supported: {UNSUPPORTED_FORMATS[data_format]}"
        )
    if data_format != SUPPORTED_FORMAT:
        raise DataConfigError(
            f"data.format={data_format!r} is not a known format. Expected {SUPPORTED_FORMAT!r} "
            "(torchvision readers: CIFAR/STL10 files, image-folder trees). Fix: set "
            f"data.format={SUPPORTED_FORMAT}"
        )
    check_fraction(omegaconf_select(cfg, "data.fraction", -1))
    workers = omegaconf_select(cfg, "data.num_workers", 0)
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 0:
        raise DataConfigError(
            f"data.num_workers={workers!r}: expected a count of loader processes >= 0 "
            "(0 loads in the training process)"
        )
    no_labels = omegaconf_select(cfg, "data.no_labels", False)
    if not isinstance(no_labels, bool):
        raise DataConfigError(f"data.no_labels={no_labels!r}: expected True or False")
    eval_grayscale(cfg)
    return builder


def has_validation_split(cfg: DictConfig) -> bool:
    """Whether pretraining gets a validation loader (solo-learn's main_pretrain rule): CIFAR and
    STL10 always (their root holds the test split); image folders when ``data.val_path`` is set,
    not for ``custom`` with ``data.no_labels``."""
    return dataset_builder(cfg).has_online_val(cfg)


def validate_data_cfg(cfg: DictConfig, stage: Stage = "pretrain") -> None:
    """Raise DataConfigError unless ``stage`` can read its data as configured.

    ``pretrain``: keys, ``augmentations``, the pretraining split and, when
    :func:`has_validation_split`, the validation split. ``classification`` (linear, k-NN): keys,
    the labelled training split and the validation split.
    """
    if stage not in ("pretrain", "classification"):
        raise ValueError(f"stage must be 'pretrain' or 'classification', got {stage!r}")
    builder = check_data_keys(cfg)
    if stage == "pretrain":
        check_augmentations(omegaconf_select(cfg, "augmentations"))
        builder.check(cfg, "pretrain")
        if builder.has_online_val(cfg):
            builder.check(cfg, "val")
    else:
        builder.check(cfg, "train")
        builder.check(cfg, "val")
