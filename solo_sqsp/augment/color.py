"""Colour-space primitives with torchvision's per-image results, batched with per-sample
parameters: gray weights, grayscale matrices, per-sample colour affine maps, hue rotation."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from solo_sqsp.augment.workspace import Workspace

SHARED_PLANE = "plane_high"
"""Name of a ``Workspace`` plane ``adjust_hue`` uses; free for other steps outside a call."""
GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""ITU-R 601 luma weights of torchvision's ``rgb_to_grayscale``."""


@functools.cache
def gray_weights(channels: int, device: torch.device) -> Tensor:
    """``(C,)`` weights of the gray value: luma for RGB, the value itself for one channel
    (made once per device, so a call never copies from the host)."""
    weights = GRAY_WEIGHTS if channels == 3 else (1.0,) * channels
    return torch.tensor(weights, device=device)


def flat_pixels(images: Tensor) -> Tensor:
    """``(N, C, H * W)`` view of the pixels of ``images`` stored row-major or column-major
    (dense ``(N, C, W, H)`` seen through ``transpose(2, 3)``), in storage order: pixelwise ops
    need no particular order. Other layouts raise ``ValueError`` (no view exists)."""
    num, channels, height, width = images.shape
    for candidate in (images, images.transpose(2, 3)):
        if candidate.is_contiguous():
            return candidate.view(num, channels, height * width)  # explicit: N may be 0
    raise ValueError(
        f"images with strides {images.stride()} are neither row- nor column-major; pass "
        "images.contiguous()"
    )


def apply_color_affine(
    images: Tensor, matrix: Tensor, offset: Tensor | None = None, out: Tensor | None = None
) -> Tensor:
    """``matrix[n] @ pixel + offset[n]`` at every pixel (``(N, C, C)``, ``(N, C)``), into
    ``out`` (the images' shape and memory layout, see ``flat_pixels``) if given."""
    if out is None:
        out = torch.empty_like(images, memory_format=torch.preserve_format)
    if out.is_contiguous() != images.is_contiguous():
        raise ValueError(
            f"out (strides {out.stride()}) and images (strides {images.stride()}) differ in "
            "memory layout; allocate out with torch.empty_like(images)"
        )
    flat, flat_out = flat_pixels(images), flat_pixels(out)
    if offset is None:
        torch.bmm(matrix, flat, out=flat_out)
    else:
        torch.baddbmm(offset.unsqueeze(2), matrix, flat, out=flat_out)
    return out


def grayscale_matrix(apply: Tensor, channels: int) -> Tensor:
    """``(N, C, C)``: torchvision's 3-channel grayscale where ``apply``, identity elsewhere."""
    weights = gray_weights(channels, apply.device)
    gray = weights.expand(channels, channels)
    identity = torch.eye(channels, device=apply.device)
    return torch.where(apply.view(-1, 1, 1), gray, identity)


def adjust_hue(
    images: Tensor,
    shift: Tensor,
    out: Tensor | None = None,
    workspace: Workspace | None = None,
) -> Tensor:
    """Rotate each sample's hue by ``shift[n]`` (fractions of a turn), keeping HSV value and
    saturation: torchvision's ``adjust_hue`` (RGB -> HSV -> RGB) in closed form, into ``out``
    (which may be ``images``) if given, with temporaries in ``workspace`` if given. Images
    with other than 3 channels are left as they are (torchvision's behaviour).

    Branch-free (``where``, ``remainder`` and arg-max are slow on CPUs): with ``V``, ``C`` the
    maximum and the chroma (maximum - minimum), the hexagonal hue is ``h = (g - b) / C`` if
    red is the maximum, ``2 + (b - r) / C`` if green, ``4 + (r - g) / C`` if blue (the first
    maximal channel, torchvision's tie order; ties give the same ``h``), picked with 0/1
    indicators by two ``lerp``s. Channel ``n`` of the rotated colour is ``V - C clamp(min(k,
    4 - k), 0, 1)`` with ``k = (h + 6 shift + 5 - 2n) mod 6``, written as ``V - 2 C + 6 C
    clamp(|frac(k / 6 + 1 / 6) - 1 / 2|, 1 / 6, 1 / 3)`` (distance to the nearest whole turn,
    read off the fractional part). The three channels of that last stage are computed in
    ``out``'s memory, so ``out`` doubles as scratch."""
    if images.shape[1] != 3:
        return images if out is None else out.copy_(images)
    workspace = workspace or Workspace()
    if out is None:
        out = torch.empty_like(images, memory_format=torch.preserve_format)
    pixels, out_pixels = flat_pixels(images), flat_pixels(out)
    plane_shape = (pixels.shape[0], 1, pixels.shape[2])

    def plane(name: str) -> Tensor:
        return workspace.take(f"plane_{name}", plane_shape, images.device)

    red, green, blue = pixels.split(1, dim=1)
    # elementwise chains, not amax / amin over channels (reductions over a dimension of three
    # first fill their output)
    high = torch.maximum(red, green, out=workspace.take(SHARED_PLANE, plane_shape, images.device))
    torch.maximum(high, blue, out=high)
    chroma = torch.minimum(red, green, out=plane("chroma"))
    torch.minimum(chroma, blue, out=chroma)
    torch.sub(high, chroma, out=chroma)
    # 0/1 indicators of the first maximal channel: red d = e = 0, green d = e = 1, blue d = 1,
    # e = 0 (comparisons written to float memory: as fast as a subtraction)
    not_red = torch.ne(high, red, out=plane("not_red"))
    is_green = torch.eq(high, green, out=plane("is_green")).mul_(not_red)
    # (h - (4 d - 2 e)) C: g - b, lerped to r - g where d, then to b - r where e
    spread = torch.sub(green, blue, out=plane("spread"))
    other = torch.sub(red, green, out=plane("other"))
    torch.lerp(spread, other, not_red, out=spread)
    torch.lerp(spread, torch.sub(blue, red, out=other), is_green, out=spread)
    # h / 6 = 2 / 3 (d - e / 2 + spread / (4 C)); gray pixels (C = 0) have spread 0
    sextant = torch.add(not_red, is_green, alpha=-0.5, out=not_red)
    safe_chroma = torch.clamp(chroma, min=1e-12, out=other)
    scaled_hue = torch.addcdiv(sextant, spread, safe_chroma, value=0.25, out=spread)
    # per channel, kept positive: k / 6 + 1 / 6 = h / 6 + shift + (2, 5 / 3, 4 / 3)
    offsets = _hue_offsets(images.device, images.dtype) + shift.view(-1, 1, 1)
    turns = torch.add(offsets, scaled_hue, alpha=2.0 / 3.0, out=out_pixels)
    turns.frac_().sub_(0.5).abs_().clamp_(1.0 / 6.0, 1.0 / 3.0)
    base = torch.add(high, chroma, alpha=-2.0, out=high)
    torch.addcmul(base, chroma, turns, value=6.0, out=out_pixels)
    return out


@functools.cache
def _hue_offsets(device: torch.device, dtype: torch.dtype) -> Tensor:
    """``(1, 3, 1)``: ``k / 6 + 1 / 6 - h / 6 - shift`` per channel, ``(2, 5 / 3, 4 / 3)`` (made
    once per device)."""
    return torch.tensor([2.0, 5.0 / 3.0, 4.0 / 3.0], device=device, dtype=dtype).view(1, 3, 1)
