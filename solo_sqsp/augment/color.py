"""Colour-space primitives with torchvision's per-image results, batched with per-sample
parameters: gray weights, grayscale matrices, per-sample colour affine maps, hue rotation."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""ITU-R 601 luma weights of torchvision's ``rgb_to_grayscale``."""


@functools.cache
def gray_weights(channels: int, device: torch.device) -> Tensor:
    """``(C,)`` weights of the gray value: luma for RGB, the value itself for one channel
    (made once per device, so a call never copies from the host)."""
    weights = GRAY_WEIGHTS if channels == 3 else (1.0,) * channels
    return torch.tensor(weights, device=device)


def apply_color_affine(
    images: Tensor, matrix: Tensor, offset: Tensor | None = None, out: Tensor | None = None
) -> Tensor:
    """``matrix[n] @ pixel + offset[n]`` at every pixel (``(N, C, C)``, ``(N, C)``), into
    ``out`` (contiguous, the images' shape) if given."""
    num, channels, height, width = images.shape
    flat = images.reshape(num, channels, height * width)
    flat_out = None if out is None else out.view(num, channels, height * width)
    if offset is None:
        result = torch.bmm(matrix, flat, out=flat_out)
    else:
        result = torch.baddbmm(offset.unsqueeze(2), matrix, flat, out=flat_out)
    return result.view(num, channels, height, width)


def grayscale_matrix(apply: Tensor, channels: int) -> Tensor:
    """``(N, C, C)``: torchvision's 3-channel grayscale where ``apply``, identity elsewhere."""
    weights = gray_weights(channels, apply.device)
    gray = weights.expand(channels, channels)
    identity = torch.eye(channels, device=apply.device)
    return torch.where(apply.view(-1, 1, 1), gray, identity)


def adjust_hue(images: Tensor, shift: Tensor, out: Tensor | None = None) -> Tensor:
    """Rotate each sample's hue by ``shift[n]`` (fractions of a turn), keeping HSV value and
    saturation: torchvision's ``adjust_hue`` (RGB -> HSV -> RGB) in closed form, into ``out``
    (which may be ``images``) if given. Images with other than 3 channels are left as they
    are (torchvision's behaviour).

    Branch-free (comparisons, ``where`` and ``remainder`` are slow on CPUs): which channel is
    the maximum comes from ``1 - sign(max - channel)``; the hexagonal hue ``h`` in [0, 6) from
    it; and channel ``n`` of the rotated colour is ``V - C clamp(min(k, 4 - k), 0, 1)`` with
    ``k = (h + 6 shift + 5 - 2n) mod 6``, written as ``V + C - 6 C clamp(d, 1/6, 1/3)`` where
    ``d`` is the distance of ``(k + 1) / 6`` to the nearest integer."""
    if images.shape[1] != 3:
        return images if out is None else out.copy_(images)
    red, green, blue = images.unbind(dim=1)
    high = torch.maximum(torch.maximum(red, green), blue)
    chroma = high - torch.minimum(torch.minimum(red, green), blue)
    inverse = chroma.clamp(min=1e-12).reciprocal_()  # grays: every numerator below is 0
    not_red = torch.sign(high - red)  # 0/1 indicators of the maximum; ties: red, then green
    is_green = torch.addcmul(not_red, torch.sign(high - green), not_red, value=-1.0)
    is_blue = not_red - is_green
    # h = (g - b) / C if red is the maximum, (b - r) / C + 2 if green, (r - g) / C + 4 if blue
    numerator = (1.0 - not_red - is_blue).mul_(green - blue)
    numerator.addcmul_(is_green - is_blue, blue - red)
    hue = numerator.mul_(inverse).add_(is_green, alpha=2.0).add_(is_blue, alpha=4.0)
    turns = torch.add(shift.view(-1, 1, 1), hue, alpha=1.0 / 6.0)
    offsets = torch.arange(3, 0, -1, device=images.device, dtype=images.dtype).div_(3.0)
    k = turns.unsqueeze(1) + offsets.view(1, 3, 1, 1)  # (k + 1) / 6 of the docstring
    distance = k.sub_(k.round()).abs_().clamp_(1.0 / 6.0, 1.0 / 3.0)
    base = (high + chroma).unsqueeze(1)
    return torch.addcmul(base, chroma.unsqueeze(1), distance, value=-6.0, out=out)
