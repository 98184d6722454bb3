"""The synthetic-sample source of Squeeze-and-Span (paper Sec. 3.2, Fig. 2).

Each step draws fresh latents on the teacher's device, runs the frozen generator, and returns
the student's augmented view(s) of the images together with the teacher's pooled features of
the same samples. As in the reference code, images leave the generator in [-1, 1], are
clamped and mapped to [0, 1]; then each sample is augmented with its own random parameters
(``BatchAugment``; one draw for the whole batch with its ``mode="per_batch"``, as the reference
code) and normalised. ``augment=None`` (Table 5, row a) only resizes to the crop
size and normalises.

Random streams: step ``t`` of the source with ``(seed, rank, worker)`` draws everything
(latents, classes, augmentation parameters) from one ``torch.Generator`` on the teacher's
device seeded with ``numpy.random.SeedSequence(seed, spawn_key=(rank, worker, t))``. Ranks and
workers thus draw independent streams, a seed reproduces a run, and the state is just the
step count: a resumed run (on any rank, from rank 0's checkpoint) draws exactly the batches
the interrupted run would have drawn next.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import numpy as np
import torch
from torch import Tensor

from solo_sqsp.augment import IMAGENET_MEAN_STD, BatchAugment

if TYPE_CHECKING:
    from typing_extensions import Unpack


class Teacher(Protocol):
    """What the source needs of a teacher (``solo_sqsp.teachers.GeneratorTeacher``)."""

    device: torch.device
    resolution: int

    def sample(self, n: int, rng: torch.Generator) -> Any: ...


@dataclass(frozen=True)
class SyntheticBatch:
    """One synthetic step: ``views`` (each ``(N, C, crop, crop)``, normalised), the teacher's
    pooled ``features`` (one ``(N, C_k)`` fp32 tensor per feature module) and the ``images``
    they were made from (clamped, in [0, 1], generator resolution)."""

    views: list[Tensor]
    features: list[Tensor]
    images: Tensor


def stream_seed(seed: int, rank: int, worker: int, step: int) -> int:
    """The 64-bit seed of step ``step`` of stream ``(seed, rank, worker)``: NumPy's
    ``SeedSequence`` hash, so nearby seeds, ranks and steps give unrelated streams."""
    words = np.random.SeedSequence(seed, spawn_key=(rank, worker, step)).generate_state(2)
    return int(words[0]) | (int(words[1]) << 32)


class StreamOptions(TypedDict, total=False):
    """The keywords every synthetic source takes after ``batch_size`` and ``augment``
    (``SeededStream``; defaults there)."""

    num_views: int
    seed: int
    rank: int
    worker: int
    crop_size: int | None
    mean: Sequence[float] | None
    std: Sequence[float] | None


class SeededStream:
    """What every synthetic source shares: the ``(seed, rank, worker, step)`` stream of random
    generators (module docstring), the augmentation of ``num_views`` views per batch, iteration
    and the resumable state. Subclasses give ``device``, ``native_resolution`` (the default
    ``crop_size``) and ``next_batch``, and set what those read before calling ``__init__``."""

    device: torch.device

    def __init__(
        self,
        batch_size: int,
        augment: BatchAugment | None,
        *,
        num_views: int = 1,
        seed: int = 0,
        rank: int = 0,
        worker: int = 0,
        crop_size: int | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
    ) -> None:
        resolution = crop_size or self.native_resolution
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if num_views < 1:
            raise ValueError(f"num_views must be at least 1, got {num_views}")
        if min(seed, rank, worker) < 0:
            raise ValueError(
                f"seed, rank and worker must be non-negative, got {seed}, {rank}, {worker}"
            )
        self.batch_size = batch_size
        self.num_views = num_views
        self.seed, self.rank, self.worker = seed, rank, worker
        if augment is None:
            default_mean, default_std = IMAGENET_MEAN_STD
            augment = BatchAugment.normalize_only(
                resolution, mean or default_mean, std or default_std
            )
        self.augment = augment
        self.step = 0
        self._rng: torch.Generator | None = None

    @property
    def native_resolution(self) -> int:
        """The side of the images the source serves (the default ``crop_size``)."""
        raise NotImplementedError

    def _generator(self) -> torch.Generator:
        """This step's generator: made once on the device, re-seeded every step."""
        device = self.device
        if self._rng is None or self._rng.device != device:
            self._rng = torch.Generator(device=device)
        return self._rng.manual_seed(stream_seed(self.seed, self.rank, self.worker, self.step))

    def _augmented_batch(
        self, images: Tensor, features: list[Tensor], rng: torch.Generator
    ) -> SyntheticBatch:
        """``num_views`` augmentations of ``images`` (in [0, 1]) drawn from ``rng``; advances
        the stream."""
        views = [self.augment(images, rng) for _ in range(self.num_views)]
        self.step += 1
        return SyntheticBatch(views=views, features=features, images=images)

    def next_batch(self) -> SyntheticBatch:
        raise NotImplementedError

    def __iter__(self) -> Iterator[SyntheticBatch]:
        return self

    def __next__(self) -> SyntheticBatch:
        return self.next_batch()

    def state_dict(self) -> dict[str, int]:
        """The stream position: ``seed`` and ``step`` (plus ``rank``/``worker`` for reference;
        a resumed source keeps its own rank and worker, so rank 0's state resumes every rank)."""
        return {"seed": self.seed, "rank": self.rank, "worker": self.worker, "step": self.step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue from ``state``: the next batch is the one the saved source drew next."""
        missing = {"seed", "step"} - set(state)
        if missing:
            name = type(self).__name__
            raise ValueError(
                f"{name} state lacks {sorted(missing)}; expected the dict that "
                f"{name}.state_dict() returns"
            )
        if int(state["seed"]) != self.seed:
            raise ValueError(
                f"the saved synthetic stream used seed {state['seed']} but this source has "
                f"seed {self.seed}; construct it with seed={state['seed']} to resume it"
            )
        self.step = int(state["step"])


class SyntheticSource(SeededStream):
    """Endless synthetic batches of ``batch_size`` from ``teacher`` (iterate, or call
    ``next_batch()``), each with ``num_views`` independently augmented views.

    ``augment=None`` resizes to ``crop_size`` (default: the teacher's resolution) and
    normalises with ``mean``/``std`` (default: ImageNet's; pass the real views' statistics,
    ``solo_sqsp.data.pretrain_normalization``). ``seed``, ``rank`` (DDP global rank) and
    ``worker`` select the random stream (see the module docstring). Everything runs on the
    teacher's device without host-device copies; ``state_dict()`` / ``load_state_dict()``
    resume the stream exactly.
    """

    def __init__(
        self,
        teacher: Teacher,
        batch_size: int,
        augment: BatchAugment | None,
        **options: Unpack[StreamOptions],
    ) -> None:
        self.teacher = teacher
        super().__init__(batch_size, augment, **options)

    @property
    def native_resolution(self) -> int:
        return self.teacher.resolution

    @property
    def device(self) -> torch.device:
        return self.teacher.device

    def next_batch(self) -> SyntheticBatch:
        """Generate, map to [0, 1], augment ``num_views`` times; advance the stream."""
        rng = self._generator()
        sample = self.teacher.sample(self.batch_size, rng)
        images = sample.images.float().clamp(-1.0, 1.0).add_(1.0).mul_(0.5)
        return self._augmented_batch(images, list(sample.features), rng)
