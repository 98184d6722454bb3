"""The online k-NN's training bank: the clean training split, filled at validation time.

So that the online ``val_knn_acc1`` means what the offline probe's number means
(``solo_sqsp.evaluation.knn``, solo-learn's ``main_knn``): every image of the training split
once, through the evaluation transform (resize and normalisation, no augmentation), backbone in
eval mode without gradients (Lightning's validation loop), not the augmented training views
solo-learn's ``BaseMethod`` collects during training. ``knn_validation_loaders`` gives the
validation loaders of such a run: the validation split first (classifier metrics and the k-NN
queries), then the training split in order, at index ``KNN_BANK_LOADER``. Under DDP each rank
fills its shard of the bank (Lightning's validation sampler may repeat a few images to even
the shards).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from solo_sqsp.data import in_order

KNN_BANK_LOADER = 1


def knn_validation_loaders(
    val_loader: DataLoader, train_loader: DataLoader, batch_size: int
) -> list[DataLoader]:
    """``[val_loader, train_loader's dataset in order]``: ``train_loader`` must read the training
    split through the evaluation transform (``make_classification_dataloaders(...,
    train_augmentation=False)``)."""
    return [val_loader, in_order(train_loader, batch_size)]


def update_knn_bank(method: Any, batch: Sequence[Tensor]) -> None:
    """Add the backbone features of a clean ``(X, targets)`` training batch to ``method.knn``'s
    training bank (unlabelled rows, target -1, left out)."""
    X, targets = batch
    if not method.no_channel_last:
        X = X.to(memory_format=torch.channels_last)
    feats = method.backbone(X)
    labelled = targets != -1
    method.knn.update(train_features=feats[labelled].detach(), train_targets=targets[labelled])


def take_bank_batch(method: Any, batch: Sequence[Tensor], dataloader_idx: int | None) -> bool:
    """Whether ``batch`` comes from the bank's loader (``KNN_BANK_LOADER``); if so its features
    went to the bank (with the k-NN on and outside Lightning's sanity check) and the validation
    step has nothing else to do with it."""
    if dataloader_idx != KNN_BANK_LOADER:
        return False
    if method.knn_eval and not method.trainer.sanity_checking:
        update_knn_bank(method, batch)
    return True
