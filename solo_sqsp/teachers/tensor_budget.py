"""Tensors read from a teacher file hold what they claim: dense, non-overlapping layouts whose
declared bytes are bytes actually stored, so that a file of a few KB cannot describe (through
zero or overlapping strides) a network of gigabytes that is then allocated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from solo_sqsp.teachers.errors import TeacherFileError
from solo_sqsp.untrusted.bounded_text import shown

STORED_BYTES_MARGIN = 64 * 1024  # declared bytes may exceed stored ones by this much


def is_dense(size: Sequence[int], stride: Sequence[int]) -> bool:
    """Whether a view of ``size`` and ``stride`` covers its elements once each, without gaps
    (a permutation of a contiguous layout; dims of size 1 may have any stride)."""
    if 0 in size:
        return True
    expected = 1
    for step, length in sorted((s, n) for n, s in zip(size, stride, strict=True) if n != 1):
        if step != expected:
            return False
        expected *= length
    return True


def check_stored_tensors(tensors: Mapping[str, Tensor], source: str) -> None:
    """Raise ``TeacherFileError`` unless every tensor is dense and non-overlapping and all of
    them together declare at most the bytes of their distinct storages (plus a small margin)."""
    declared = 0
    stored: dict[int, int] = {}
    for name, tensor in tensors.items():
        if tensor.layout != torch.strided or tensor.is_quantized or tensor.is_nested:
            raise TeacherFileError(
                f"{source}: tensor {shown(name)} is {tensor.layout}, quantized or nested; "
                "teacher files hold plain strided tensors"
            )
        if not is_dense(tensor.shape, tensor.stride()):
            raise TeacherFileError(
                f"{source}: tensor {shown(name)} of size {shown(tuple(tensor.shape))} has stride "
                f"{shown(tensor.stride())}, not a dense layout; the file is corrupt or crafted"
            )
        declared += tensor.numel() * tensor.element_size()
        storage = tensor.untyped_storage()
        stored[storage.data_ptr()] = max(stored.get(storage.data_ptr(), 0), storage.nbytes())
    if declared > sum(stored.values()) + STORED_BYTES_MARGIN:
        raise TeacherFileError(
            f"{source}: the tensors declare {declared} bytes but the file stores "
            f"{sum(stored.values())}; the file is corrupt or crafted"
        )
