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

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from solo_sqsp.augment.workspace import Workspace

CROP_TRIALS = 10
"""torchvision's ``RandomResizedCrop`` tries 10 (area, ratio) draws before its fallback."""

INTERPOLATIONS = ("bilinear", "bicubic")
SCRATCH = "resample"
"""Name of the ``Workspace`` buffer ``resample_bilinear`` uses; free again when it returns."""
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
    is taken at a uniform position, else the central crop clipped to ``ratio``.

    A trial's sides are ``sqrt(area) * exp(-+ log_ratio / 2)``, rounded (torchvision's
    ``sqrt(area / ratio)``, ``sqrt(area * ratio)``)."""
    draws = torch.rand(num, CROP_TRIALS + 1, 2, generator=rng, device=device)
    trials, position = draws[:, :CROP_TRIALS], draws[:, CROP_TRIALS]
    log_low, log_high = math.log(ratio[0]), math.log(ratio[1])
    area = height * width
    root_area = torch.sqrt(trials[..., :1] * (area * (scale[1] - scale[0])) + area * scale[0])
    half_log_ratio = trials[..., 1:] * ((log_high - log_low) / 2) + log_low / 2
    sides = torch.cat([-half_log_ratio, half_log_ratio], dim=2).exp_().mul_(root_area).round_()
    limits = _box_limits(height, width, device)  # (2,): height, width
    fits = ((sides >= 1.0) & (sides <= limits)).all(dim=2)  # (N, trials)
    first_fit = fits.to(torch.uint8).argmax(dim=1).view(num, 1, 1).expand(num, 1, 2)
    found = fits.any(dim=1, keepdim=True)
    fallback_size, fallback_corner = _central_fallback(height, width, ratio, device)
    size = torch.where(found, sides.gather(1, first_fit).squeeze(1), fallback_size)
    slots = limits + 1.0 - size
    corner = torch.minimum(position.mul(slots).floor_(), slots - 1.0)
    corner = torch.where(found, corner, fallback_corner)
    return torch.cat([corner, size], dim=1)


@functools.cache
def _box_limits(height: int, width: int, device: torch.device) -> Tensor:
    """``(height, width)`` as a tensor on ``device`` (made once, never copied per call)."""
    return torch.tensor([float(height), float(width)], device=device)


@functools.cache
def _central_fallback(
    height: int, width: int, ratio: tuple[float, float], device: torch.device
) -> tuple[Tensor, Tensor]:
    """torchvision's fallback box: the whole image clipped to the allowed aspect ratio, in the
    middle; ``(2,)`` sizes and top-left corner on ``device`` (made once)."""
    in_ratio = width / height
    if in_ratio < min(ratio):
        box_h, box_w = round(width / min(ratio)), width
    elif in_ratio > max(ratio):
        box_h, box_w = height, round(height * max(ratio))
    else:
        box_h, box_w = height, width
    size = torch.tensor([box_h, box_w], device=device, dtype=torch.float32)
    corner = torch.tensor(
        [(height - box_h) // 2, (width - box_w) // 2], device=device, dtype=torch.float32
    )
    return size, corner


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
    """Each sample's crop as seen by the resampling, rows then columns (axis 1 of every
    tensor): output sample centres ``(N, 2, size)`` in input pixel units (torchvision: output
    ``i`` of a box ``[start, start + length)`` sits at ``start + (i + 0.5) * length / size``;
    the flip reverses the columns), the first and last pixel inside the box ``(N, 2, 1)``,
    and the input's ``(height, width)``."""

    centres: Tensor
    first: Tensor
    last: Tensor
    in_size: tuple[int, int]

    @property
    def widening(self) -> Tensor:
        """``(N, 2, 1)`` filter widening ``max(1, length / size)`` (antialiasing when
        shrinking)."""
        size = self.centres.shape[2]
        return (self.last - self.first + 1.0).div_(size).clamp_(min=1.0)


def crop_grid(boxes: Tensor, flip: Tensor | None, height: int, width: int, size: int) -> CropGrid:
    """The ``CropGrid`` of ``(N, 4)`` boxes ``(top, left, height, width)`` resized to
    ``size x size``, mirrored left-right where ``flip`` (``(N,)`` bool) is set (the mirrored
    columns run from the box's right edge leftwards)."""
    num = boxes.shape[0]
    starts, lengths = boxes.view(num, 2, 2, 1).unbind(1)  # (N, 2 axes, 1) each
    steps = lengths / size
    origins = starts
    if flip is not None:
        mirrored = flip.view(num, 1, 1) & _column_axis(boxes.device)
        origins = torch.where(mirrored, starts + lengths, starts)
        steps = torch.where(mirrored, -steps, steps)
    return CropGrid(
        centres=torch.addcmul(origins, _output_offsets(size, boxes.device, boxes.dtype), steps),
        first=starts,
        last=torch.add(starts, lengths).sub_(1.0),
        in_size=(height, width),
    )


@functools.cache
def _column_axis(device: torch.device) -> Tensor:
    """``(1, 2, 1)`` bool: False for the row axis, True for the column axis (made once)."""
    return torch.tensor([False, True], device=device).view(1, 2, 1)


@functools.cache
def _output_offsets(size: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(size,)``: ``i + 0.5``, output sample ``i``'s centre in output pixels (made once)."""
    return torch.arange(size, device=device, dtype=dtype).add_(0.5)


def crop_matrices(grid: CropGrid, interpolation: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Row ``(N, size, H)`` and column ``(N, size, W)`` resampling matrices of a ``CropGrid``:
    torchvision's antialiased filter weights (``F.resized_crop(..., antialias=True)``) over the
    pixels inside each box, rows summing to one. Apply with ``separable_apply``."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    rows, cols = (
        _weights(grid, axis, in_size, interpolation) for axis, in_size in enumerate(grid.in_size)
    )
    return rows, cols


def _weights(grid: CropGrid, axis: int, in_size: int, interpolation: str) -> Tensor:
    pixels = torch.arange(in_size, device=grid.centres.device, dtype=grid.centres.dtype)
    first, last = grid.first[:, axis].unsqueeze(2), grid.last[:, axis].unsqueeze(2)
    inside = (pixels >= first) & (pixels <= last)  # (N, 1, in_size)
    distance = (pixels + 0.5 - grid.centres[:, axis].unsqueeze(2)).div_(
        grid.widening[:, axis].unsqueeze(2)
    )
    weights = _filter(distance, interpolation).mul_(inside)
    return weights.div_(weights.sum(dim=2, keepdim=True))


def can_resample_bilinear(height: int, width: int, size: int) -> bool:
    """Whether ``resample_bilinear`` applies: no box is larger than the output (boxes lie
    inside the input), so torchvision's antialiased bilinear filter is the plain two-tap
    triangle."""
    return height <= size and width <= size


def resample_bilinear(
    images: Tensor, grid: CropGrid, workspace: Workspace, source: Tensor | None = None
) -> Tensor:
    """Bilinear crop-and-resize of every sample as two passes of two-tap weighted row sums
    (``crop_matrices``' result, with two taps instead of a dense matmul; see
    ``can_resample_bilinear``). Output sample ``n`` is made from ``images[source[n]]`` (default
    ``n``), so a permutation of the batch costs nothing.

    Each output row is ``(1 - f) row[low] + f row[low + 1]`` of the input rows, one
    ``embedding_bag`` (a weighted sum of gathered rows, written once) per pass. Tap positions
    are clamped to the box's first and last pixel centre, which is the triangle filter
    renormalised over the pixels inside the box. The row pass's result is transposed in
    between, so the column pass's result holds each image transposed. Returns it seen through
    ``transpose(2, 3)``: the right ``(N, C, size, size)`` values, stored column-major
    (``color.flat_pixels``)."""
    num, channels, height, width = images.shape
    size = grid.centres.shape[2]
    position = torch.clamp(grid.centres - 0.5, min=grid.first, max=grid.last)  # (N, 2, size)
    upper = position.frac()  # weight of the second tap (positions are >= 0)
    low = position - upper
    taps = torch.stack([low, torch.minimum(low + 1.0, grid.last)], dim=3).int()
    # both passes' bags in one add: (2 axes, N, C, size, 2 taps), rows of the pass's table
    bags = torch.empty(2, num, channels, size, 2, device=images.device, dtype=torch.int32)
    plane_offsets = _plane_offsets(source, num, channels, height, width, images.device)
    torch.add(taps.transpose(0, 1).unsqueeze(2), plane_offsets, out=bags)
    weights = torch.stack([1.0 - upper, upper], dim=3).transpose(0, 1).unsqueeze(2)
    weights = weights.expand(2, num, channels, size, 2).contiguous()
    offsets = _bag_offsets(num * channels * size, images.device)

    def taps_pass(table: Tensor, axis: int) -> Tensor:
        return F.embedding_bag(
            bags[axis].view(-1),
            table,
            offsets,
            mode="sum",
            per_sample_weights=weights[axis].view(-1),
        )

    rows = taps_pass(images.view(-1, width), 0)  # (N C size_y, W)
    across = workspace.take(SCRATCH, (num, channels, width, size), images.device)
    across.copy_(rows.view(num, channels, size, width).transpose(2, 3))
    del rows  # the next pass's result may take its memory (no page faults in fresh memory)
    resampled = taps_pass(across.view(-1, size), 1)  # (N C size_x, size_y)
    return resampled.view(num, channels, size, size).transpose(2, 3)


def _plane_offsets(
    source: Tensor | None, num: int, channels: int, height: int, width: int, device: torch.device
) -> Tensor:
    """``(2, N, C, 1, 1)``: the first table row of plane ``(n, c)`` in each pass, the row pass
    reading plane ``(source[n], c)`` of the input (``H`` rows each), the column pass plane
    ``(n, c)`` of the transposed row-pass result (``W`` rows each)."""
    columns = _identity_plane_offsets(num, channels, width, device)
    if source is None:
        rows = _identity_plane_offsets(num, channels, height, device)
    else:
        first_rows = _plane_starts(channels, height, device)
        rows = torch.add(first_rows, source.view(num, 1).int(), alpha=channels * height)
    return torch.stack([rows, columns]).view(2, num, channels, 1, 1)


@functools.lru_cache(maxsize=16)
def _identity_plane_offsets(num: int, channels: int, length: int, device: torch.device) -> Tensor:
    """``(N, C)``: ``(C n + c) length``, the first row of plane ``(n, c)`` (made once)."""
    return (
        torch.arange(num * channels, device=device, dtype=torch.int32)
        .mul_(length)
        .view(num, channels)
    )


@functools.cache
def _plane_starts(channels: int, length: int, device: torch.device) -> Tensor:
    """``(1, C)``: ``c length`` (made once)."""
    return torch.arange(channels, device=device, dtype=torch.int32).mul_(length).view(1, channels)


@functools.lru_cache(maxsize=16)
def _bag_offsets(bags: int, device: torch.device) -> Tensor:
    """``(bags,)``: where each two-tap bag starts in the flat index list (made once)."""
    return torch.arange(0, 2 * bags, 2, device=device, dtype=torch.int32)


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
