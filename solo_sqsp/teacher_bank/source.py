"""Serve a teacher bank like a dataset: shuffled passes, fresh per-sample augmentation.

Each step takes the next ``batch_size`` positions of this rank's endless sequence of passes over
the bank (pass ``e`` is a permutation drawn from ``tagged_seed(seed, "order", rank, worker, e)``),
reads their uint8 images and fp16 features from the memory maps, moves them to the training
device, converts there (images to [0, 1] float, features to fp32) and augments every view with
its own parameters, drawn as ``SyntheticSource`` draws them: from a generator on the device seeded
with ``stream_seed(seed, rank, worker, step)``. The state is the step count, so a resumed run
serves exactly the batches the interrupted one would have served next.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from solo_sqsp.augment import IMAGENET_MEAN_STD, BatchAugment
from solo_sqsp.synthetic import SyntheticBatch, stream_seed
from solo_sqsp.teacher_bank.storage import TeacherBank, tagged_seed


class BankSource:
    """Batches of ``batch_size`` bank samples on ``device``, each with ``num_views``
    independently augmented views; the arguments mean what they mean for ``SyntheticSource``."""

    def __init__(
        self,
        bank: TeacherBank,
        device: torch.device | str,
        batch_size: int,
        augment: BatchAugment | None,
        num_views: int = 1,
        seed: int = 0,
        rank: int = 0,
        worker: int = 0,
        crop_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        if batch_size < 1 or num_views < 1:
            raise ValueError(
                f"batch_size and num_views must be at least 1, got {batch_size}, {num_views}"
            )
        if min(seed, rank, worker) < 0:
            raise ValueError(
                f"seed, rank and worker must be non-negative, got {seed}, {rank}, {worker}"
            )
        self.bank = bank
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.num_views = num_views
        self.seed, self.rank, self.worker = seed, rank, worker
        if augment is None:
            default_mean, default_std = IMAGENET_MEAN_STD
            augment = BatchAugment.normalize_only(
                crop_size or int(bank.meta["image_shape"][-1]),
                mean or default_mean,
                std or default_std,
            )
        self.augment = augment
        self.step = 0
        self._order: tuple[int, torch.Tensor] | None = None
        self._rng: torch.Generator | None = None

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
        if self._rng is None:
            self._rng = torch.Generator(device=self.device)
        rng = self._rng.manual_seed(stream_seed(self.seed, self.rank, self.worker, self.step))
        views = [self.augment(images, rng) for _ in range(self.num_views)]
        self.step += 1
        return SyntheticBatch(
            views=views,
            features=list(features.split(self.bank.feature_dims, dim=1)),
            images=images,
        )

    def __iter__(self) -> Iterator[SyntheticBatch]:
        return self

    def __next__(self) -> SyntheticBatch:
        return self.next_batch()

    def state_dict(self) -> dict[str, int]:
        """``seed`` and ``step`` (``rank``/``worker`` for reference), as ``SyntheticSource``."""
        return {"seed": self.seed, "rank": self.rank, "worker": self.worker, "step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from ``state``: the next batch is the one the saved source served next."""
        missing = {"seed", "step"} - set(state)
        if missing:
            raise ValueError(
                f"bank source state lacks {sorted(missing)}; expected the dict that "
                "BankSource.state_dict() returns"
            )
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"the saved synthetic stream used seed {state['seed']} but this source has "
                f"seed {self.seed}; construct it with seed={state['seed']} to resume it"
            )
        self.step = int(state["step"])
