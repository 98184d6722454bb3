"""Scratch tensors kept from one call to the next (CPU only; why: docs/architecture.md)."""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

import torch
from torch import Tensor


class Workspace:
    """Named scratch buffers, one set per thread (concurrent calls never share one).

    ``take(name, shape, device)`` returns a tensor of ``shape`` whose values are garbage; on
    the CPU it is backed by the same memory as the last ``take`` of ``name`` when that was at
    least as large, so a buffer must not be returned to a caller (the next ``take`` overwrites
    it), and two buffers in use at once need two names. Copies and pickles start empty."""

    def __init__(self) -> None:
        self._local = threading.local()

    def take(
        self,
        name: str,
        shape: Sequence[int],
        device: torch.device,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        if device.type != "cpu":
            return torch.empty(tuple(shape), device=device, dtype=dtype)
        buffers: dict[str, Tensor] = self._local.__dict__.setdefault("buffers", {})
        numel = math.prod(shape)
        flat = buffers.get(name)
        if flat is None or flat.numel() < numel or flat.device != device or flat.dtype != dtype:
            flat = torch.empty(numel, device=device, dtype=dtype)
            buffers[name] = flat
        return flat.as_strided(tuple(shape), _contiguous_strides(shape))

    def __getstate__(self) -> dict:
        return {}

    def __setstate__(self, state: dict) -> None:
        self.__init__()


def _contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """Row-major strides of ``shape`` (in elements)."""
    strides, step = [], 1
    for extent in reversed(shape):
        strides.append(step)
        step *= max(extent, 1)
    return tuple(reversed(strides))
