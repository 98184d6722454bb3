"""Real-data loaders in solo-learn's batch formats.

Pretraining batches are ``[indexes, [view_1, view_2, ...], targets]`` (solo-learn's
``BaseMethod.training_step`` input); evaluation batches are ``(images, targets)``. Loaders shuffle
and drop the last partial training batch; under Lightning DDP the Trainer swaps in a
``DistributedSampler`` (``use_distributed_sampler=True``, its default), so each rank reads its
own shard. With the solo-learn backend, datasets and loaders come from solo-learn's
``prepare_datasets``/``prepare_dataloader(s)``, always with ``download=False``.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset

from solo_sqsp.config import omegaconf_select
from solo_sqsp.data.backend import (
    Backend,
    resolve_backend,
    solo_classification_data,
    solo_pretrain_data,
)
from solo_sqsp.data.datasets import DatasetBuilder, IndexedDataset, Split, reading
from solo_sqsp.data.errors import DataConfigError
from solo_sqsp.data.subsample import subsample
from solo_sqsp.data.transforms import make_classification_transforms, make_pretrain_transform
from solo_sqsp.data.validation import check_data_keys

DEFAULT_NUM_WORKERS = 4  # solo-learn's prepare_dataloader default


def _check_batch_size(
    batch_size: int, dataset: Dataset, builder: DatasetBuilder, cfg: DictConfig, split: Split
) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise DataConfigError(f"batch_size={batch_size!r}: expected a positive integer")
    if len(dataset) < batch_size:
        key, path = builder.location(cfg, split)
        raise DataConfigError(
            f"{key}={str(path)!r}: the {split} split holds {len(dataset)} images, fewer than one "
            f"batch of {batch_size}, and the last partial batch is dropped. Fix: lower "
            "optimizer.batch_size, or raise data.fraction"
        )


def _loader(dataset: Dataset, batch_size: int, num_workers: int, train: bool) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        drop_last=train,
        num_workers=num_workers,
        pin_memory=torch.cuda.is_available(),
    )


def in_order(loader: DataLoader, batch_size: int) -> DataLoader:
    """``loader``'s dataset, unshuffled and without dropping the last partial batch (every image
    once: k-NN features)."""
    return DataLoader(
        loader.dataset,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        num_workers=loader.num_workers,
        pin_memory=loader.pin_memory,
    )


def make_pretrain_dataloader(
    cfg: DictConfig, batch_size: int, backend: Backend | None = None
) -> DataLoader:
    """The real-image pretraining loader: ``[indexes, [views...], targets]`` batches.

    ``batch_size`` is the real part of the batch (the sqsp method passes round((1 - a) * B)).
    Checks the config and files first (DataConfigError); applies ``data.fraction``; targets are
    -1 for unlabeled images (STL10's unlabeled split, ``custom`` with ``data.no_labels``).
    """
    builder = check_data_keys(cfg)
    builder.check(cfg, "pretrain")
    transform = make_pretrain_transform(cfg, backend)
    num_workers = omegaconf_select(cfg, "data.num_workers", DEFAULT_NUM_WORKERS)
    fraction = omegaconf_select(cfg, "data.fraction", -1)
    if resolve_backend(backend) == "solo-learn" and builder.solo_learn_native:
        solo = solo_pretrain_data()
        key, path = builder.location(cfg, "pretrain")
        with reading(key, path):
            dataset = solo.prepare_datasets(
                cfg.data.dataset,
                transform,
                train_data_path=path,
                data_format="image_folder",
                no_labels=bool(omegaconf_select(cfg, "data.no_labels", False)),
                download=False,
                data_fraction=-1,
            )
        subsample(dataset, fraction)
        _check_batch_size(batch_size, dataset, builder, cfg, "pretrain")
        return solo.prepare_dataloader(dataset, batch_size=batch_size, num_workers=num_workers)
    dataset = builder.open(cfg, "pretrain", transform)
    subsample(dataset, fraction)
    _check_batch_size(batch_size, dataset, builder, cfg, "pretrain")
    return _loader(IndexedDataset(dataset), batch_size, num_workers, train=True)


def make_classification_dataloaders(
    cfg: DictConfig,
    batch_size: int,
    crop_size: int | None = None,
    train_augmentation: bool = True,
    backend: Backend | None = None,
) -> tuple[DataLoader, DataLoader]:
    """``(train_loader, val_loader)`` of ``(images, targets)`` batches for linear/k-NN evaluation.

    ``crop_size`` overrides the dataset's evaluation size (see ``make_classification_transforms``).
    ``train_augmentation=False`` gives the training split the validation transform, as solo-learn's
    main_knn does for k-NN features. The validation split is ``data.val_path`` (for CIFAR and
    STL10, their test split under ``data.val_path`` or else ``data.train_path``).
    """
    builder = check_data_keys(cfg)
    builder.check(cfg, "train")
    builder.check(cfg, "val")
    train_transform, val_transform = make_classification_transforms(cfg, crop_size, backend)
    if not train_augmentation:
        train_transform = val_transform
    num_workers = omegaconf_select(cfg, "data.num_workers", DEFAULT_NUM_WORKERS)
    if resolve_backend(backend) == "solo-learn" and builder.solo_learn_native:
        solo = solo_classification_data()
        train_key, train_path = builder.location(cfg, "train")
        _, val_path = builder.location(cfg, "val")
        with reading(train_key, train_path):
            train, val = solo.prepare_datasets(
                cfg.data.dataset,
                train_transform,
                val_transform,
                train_data_path=train_path,
                val_data_path=val_path,
                data_format="image_folder",
                download=False,
            )
        _check_batch_size(batch_size, train, builder, cfg, "train")
        return solo.prepare_dataloaders(train, val, batch_size=batch_size, num_workers=num_workers)
    train = builder.open(cfg, "train", train_transform)
    val = builder.open(cfg, "val", val_transform)
    _check_batch_size(batch_size, train, builder, cfg, "train")
    return (
        _loader(train, batch_size, num_workers, train=True),
        _loader(val, batch_size, num_workers, train=False),
    )
