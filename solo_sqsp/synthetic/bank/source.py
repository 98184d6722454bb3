"""Serve a teacher bank like a dataset: shuffled passes, fresh per-sample augmentation.

Each step takes the next ``batch_size`` positions of this rank's endless sequence of passes over
the bank (pass ``e`` is a permutation drawn from ``tagged_seed(seed, "order", rank, worker, e)``),
reads their uint8 images and fp16 features from the memory maps, moves them to the training
device, converts there (images to [0, 1] float, features to fp32) and augments every view with
its own parameters (per sample, or per batch: the ``BatchAugment``'s ``mode``), drawn as
``SyntheticSource`` draws them: from a generator on the device seeded with
``stream_seed(seed, rank, worker, step)``. The state is the step count, so a resumed run
serves exactly the batches the interrupted one would have served next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from solo_sqsp.augment import BatchAugment
from solo_sqsp.synthetic.bank.storage import TeacherBank, tagged_seed
from solo_sqsp.synthetic.stream import SeededStream, StreamOptions, SyntheticBatch

if TYPE_CHECKING:
    from typing_extensions import Unpack


class BankSource(SeededStream):
    """Batches of ``batch_size`` bank samples on ``device``, each with ``num_views``
    independently augmented views; the arguments mean what they mean for ``SyntheticSource``."""

    def __init__(
        self,
        bank: TeacherBank,
        device: torch.device | str,
        batch_size: int,
        augment: BatchAugment | None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self.bank = bank
        super().__init__(batch_size, augment, **options)
        self.device = torch.device(device)
        self._order: tuple[int, torch.Tensor] | None = None

    @property
    def native_resolution(self) -> int:
        return int(self.bank.meta["image_shape"][-1])

    def _pass_order(self, epoch: int) -> torch.Tensor:
        """The permutation of bank indices of pass ``epoch`` (kept for the current pass)."""
        if self._order is None or self._order[0] != epoch:
            rng = torch.Generator().manual_seed(
                tagged_seed(self.seed, "order", self.rank, self.worker, epoch)
            )
            self._order = (epoch, torch.randperm(self.bank.size, generator=rng))
        return self._order[1]

    def indices(self, step: int) -> torch.Tensor:
        """Bank indices of step ``step``'s batch (positions ``step * B ... step * B + B - 1``)."""
        size = self.bank.size
        positions = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs = positions // size
        out = torch.empty_like(positions)
        for epoch in epochs.unique().tolist():
            selected = epochs == epoch
            out[selected] = self._pass_order(epoch)[positions[selected] % size]
        return out

    def next_batch(self) -> SyntheticBatch:
        """Read, convert on the device, augment ``num_views`` times; advance the stream."""
        index = self.indices(self.step).numpy()
        non_blocking = self.device.type == "cuda"
        stored_images = torch.from_numpy(np.asarray(self.bank.images[index]))
        stored_features = torch.from_numpy(np.asarray(self.bank.features[index]))
        images = stored_images.to(self.device, non_blocking=non_blocking).float().div_(255.0)
        features = stored_features.to(self.device, non_blocking=non_blocking).float()
        features = list(features.split(self.bank.feature_dims, dim=1))
        return self._augmented_batch(images, features, self._generator())
