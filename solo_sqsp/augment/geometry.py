"""Per-sample random resized crop and horizontal flip as separable resampling matrices.

A crop box ``(top, left, height, width)`` resized to ``size x size`` is, per sample, a linear map
along rows and one along columns: ``out = R_y @ image @ R_x^T`` with ``R_y`` of shape
``(size, H)`` and ``R_x`` of shape ``(size, W)``. The rows of ``R`` are torchvision's
antialiased resampling weights (``F.resized_crop(..., antialias=True)``, the v2 default, which
is plain bilinear/bicubic interpolation when enlarging), restricted to the box, so a batch of
independently drawn boxes is two batched matmuls and equals torchvision's crop-then-resize per
image. A horizontal flip reverses the output columns of ``R_x`` and costs nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

CROP_TRIALS = 10
"""torchvision's ``RandomResizedCrop`` tries 10 (area, ratio) draws before its fallback."""

INTERPOLATIONS = ("bilinear", "bicubic")
_BICUBIC_A = -0.5
"""Keys' cubic with a = -0.5: the filter of torchvision's antialiased bicubic resize (PIL's)."""


def sample_crop_boxes(
    num: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: torch.Generator,
    device: torch.device,
) -> Tensor:
    """``(num, 4)`` float boxes ``(top, left, height, width)`` in whole pixels, one per sample,
    drawn as torchvision's ``RandomResizedCrop.make_params``: up to 10 trials of an area
    fraction ``~ U(scale)`` and a log aspect ratio ``~ U(log ratio)``; the first trial that fits
    is taken at a uniform position, else the central crop clipped to ``ratio``."""
    draws = torch.rand(num, CROP_TRIALS, 2, generator=rng, device=device)
    area = height * width * (scale[0] + (scale[1] - scale[0]) * draws[..., 0])
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(log_low + (log_high - log_low) * draws[..., 1])
    trial_w = torch.sqrt(area * aspect).round()
    trial_h = torch.sqrt(area / aspect).round()
    fits = (trial_w > 0) & (trial_w <= width) & (trial_h > 0) & (trial_h <= height)
    first_fit = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    found = fits.any(dim=1)

    fallback_h, fallback_w = _central_fallback(height, width, ratio)
    box_w = torch.where(found, trial_w.gather(1, first_fit).squeeze(1), fallback_w)
    box_h = torch.where(found, trial_h.gather(1, first_fit).squeeze(1), fallback_h)

    position = torch.rand(num, 2, generator=rng, device=device)
    top_slots, left_slots = height - box_h + 1, width - box_w + 1
    top = torch.minimum((position[:, 0] * top_slots).floor(), top_slots - 1)
    left = torch.minimum((position[:, 1] * left_slots).floor(), left_slots - 1)
    top = torch.where(found, top, float((height - fallback_h) // 2))
    left = torch.where(found, left, float((width - fallback_w) // 2))
    return torch.stack([top, left, box_h, box_w], dim=1)


def _central_fallback(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int]:
    """torchvision's fallback box size: the whole image, clipped to the allowed aspect ratio."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        return round(width / min(ratio)), width
    if in_ratio > max(ratio):
        return height, round(height * max(ratio))
    return height, width


def center_square_boxes(num: int, height: int, width: int, device: torch.device) -> Tensor:
    """The largest central square (the whole image if square) for every sample: the box of
    "resize only" (``rrc.enabled: false``), so the output is always ``size x size``."""
    side = min(height, width)
    box = ((height - side) // 2, (width - side) // 2, side, side)
    return torch.stack([torch.full((num,), float(v), device=device) for v in box], dim=1)


def _filter(distance: Tensor, interpolation: str) -> Tensor:
    """Interpolation kernel at ``distance`` (in filter units): triangle or Keys' cubic."""
    x = distance.abs()
    if interpolation == "bilinear":
        return (1.0 - x).clamp_(min=0.0)
    a = _BICUBIC_A
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return torch.where(x < 1.0, near, torch.where(x < 2.0, far, torch.zeros_like(x)))


@dataclass(frozen=True)
class CropGrid:
    """Each sample's crop as seen by the resampling: output sample centres along rows and
    columns ``(N, size)`` in input pixel units (torchvision: output ``i`` of a box ``[start,
    start + length)`` sits at ``start + (i + 0.5) * length / size``; the flip reverses the
    columns), the filter widening ``(N, 1)`` (``max(1, length / size)``: antialiasing when
    shrinking) and which pixels lie inside the box, ``(N, H)`` / ``(N, W)`` 0/1 floats."""

    row_centres: Tensor
    col_centres: Tensor
    row_widening: Tensor
    col_widening: Tensor
    row_inside: Tensor
    col_inside: Tensor


def crop_grid(boxes: Tensor, flip: Tensor | None, height: int, width: int, size: int) -> CropGrid:
    """The ``CropGrid`` of ``(N, 4)`` boxes ``(top, left, height, width)`` resized to
    ``size x size``, mirrored left-right where ``flip`` (``(N,)`` bool) is set."""
    row_centres, row_widening, row_inside = _axis(boxes[:, 0], boxes[:, 2], height, size)
    col_centres, col_widening, col_inside = _axis(boxes[:, 1], boxes[:, 3], width, size)
    if flip is not None:
        col_centres = torch.where(flip.unsqueeze(1), col_centres.flip(1), col_centres)
    return CropGrid(row_centres, col_centres, row_widening, col_widening, row_inside, col_inside)


def _axis(start: Tensor, length: Tensor, in_size: int, out_size: int) -> tuple[Tensor, ...]:
    scale = (length / out_size).unsqueeze(1)
    outputs = torch.arange(out_size, device=start.device, dtype=start.dtype)
    centres = (outputs + 0.5) * scale + start.unsqueeze(1)
    pixels = torch.arange(in_size, device=start.device, dtype=start.dtype)
    inside = (pixels >= start.unsqueeze(1)) & (pixels < (start + length).unsqueeze(1))
    return centres, scale.clamp(min=1.0), inside.to(start.dtype)


def crop_matrices(grid: CropGrid, interpolation: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Row ``(N, size, H)`` and column ``(N, size, W)`` resampling matrices of a ``CropGrid``:
    torchvision's antialiased filter weights (``F.resized_crop(..., antialias=True)``) over the
    pixels inside each box, rows summing to one. Apply with ``separable_apply``."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    rows = _weights(grid.row_centres, grid.row_widening, grid.row_inside, interpolation)
    cols = _weights(grid.col_centres, grid.col_widening, grid.col_inside, interpolation)
    return rows, cols


def _weights(centres: Tensor, widening: Tensor, inside: Tensor, interpolation: str) -> Tensor:
    pixel_centres = torch.arange(inside.shape[1], device=inside.device, dtype=inside.dtype) + 0.5
    distance = (pixel_centres - centres.unsqueeze(2)).div_(widening.unsqueeze(2))
    weights = _filter(distance, interpolation).mul_(inside.unsqueeze(1))
    return weights.div_(weights.sum(dim=2, keepdim=True))


def separable_apply(images: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``rows[n] @ images[n, c] @ cols[n]^T`` for every sample ``n`` and channel ``c``."""
    num, channels, height, width = images.shape
    size_y, size_x = rows.shape[1], cols.shape[1]
    across = torch.bmm(images.reshape(num, channels * height, width), cols.transpose(1, 2))
    across = across.view(num * channels, height, size_x)
    per_channel_rows = rows.unsqueeze(1).expand(num, channels, size_y, height)
    return torch.bmm(per_channel_rows.reshape(num * channels, size_y, height), across).view(
        num, channels, size_y, size_x
    )
