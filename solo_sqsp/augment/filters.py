"""Per-sample Gaussian blur, solarization and equalization, batched.

Blur: solo-learn blurs with ``sigma ~ U(0.1, 2.0)`` (PIL's ``GaussianBlur(radius=sigma)``, whose
support is about 3 sigma). Here each sample gets torchvision's ``gaussian_blur`` kernel
(reflect padding) of side ``2 * ceil(3 * sigma_max) + 1``, as two ``(size, size)`` matrices so
the separable filter with per-sample sigma runs as batched matmuls (``geometry.separable_apply``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.transforms.v2 import functional as tvf

SOLARIZE_THRESHOLD = 0.5
"""PIL's ``ImageOps.solarize`` threshold 128 of 255 (solo-learn), on images in [0, 1]."""


def blur_radius(sigma_max: float, size: int) -> int:
    """Half-width of the blur kernel: 3 sigma, at most ``size - 1`` (one reflection)."""
    return max(1, min(math.ceil(3.0 * sigma_max), size - 1))


def blur_matrix(sigma: Tensor, apply: Tensor, size: int, radius: int) -> Tensor:
    """``(N, size, size)``: a 1-D Gaussian blur of std ``sigma[n]`` with reflect padding
    (torchvision's kernel ``exp(-d^2 / 2 sigma^2)`` over ``d = -radius..radius``, normalised);
    the identity where ``apply`` is False."""
    device = sigma.device
    taps = torch.arange(-radius, radius + 1, device=device, dtype=sigma.dtype)
    kernel = torch.exp(-0.5 * (taps / sigma.unsqueeze(1)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = torch.where(apply.unsqueeze(1), kernel, (taps == 0).to(kernel.dtype))
    positions = torch.arange(size, device=device).unsqueeze(1) + taps.long()
    reflected = torch.where(positions < 0, -positions, positions)
    reflected = torch.where(reflected >= size, 2 * (size - 1) - reflected, reflected)
    num = sigma.shape[0]
    weights = kernel.unsqueeze(1).expand(num, size, kernel.shape[1])
    matrix = torch.zeros(num, size, size, device=device, dtype=sigma.dtype)
    return matrix.scatter_add_(2, reflected.expand(num, -1, -1), weights)


def solarize(images: Tensor, apply: Tensor) -> Tensor:
    """Invert the pixels at or above 0.5 of the samples where ``apply`` (``(N,)`` bool)."""
    invert = apply.view(-1, 1, 1, 1) & (images >= SOLARIZE_THRESHOLD)
    return torch.where(invert, 1.0 - images, images)


def equalize(images: Tensor, apply: Tensor) -> Tensor:
    """Histogram-equalize the samples where ``apply``: torchvision's ``equalize`` (PIL's
    scheme, per image and channel over 256 levels), which is batched already."""
    return torch.where(apply.view(-1, 1, 1, 1), tvf.equalize(images), images)
