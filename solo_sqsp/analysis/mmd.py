"""Squared maximum mean discrepancy between two feature samples (paper Table 5, right).

Kernels ``rbf`` (median-heuristic bandwidth, default) and ``polynomial`` (KID's cubic), unbiased
estimator (Gretton et al., JMLR 2012, Eq. 3). Why these: docs/architecture.md.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

Kernel = Literal["rbf", "polynomial"]
KERNELS: tuple[Kernel, ...] = ("rbf", "polynomial")


def _check_samples(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(
            f"MMD needs two (n, d) feature matrices of one width d; got {tuple(x.shape)} and "
            f"{tuple(y.shape)}"
        )
    if min(x.shape[0], y.shape[0]) < 2:
        raise ValueError(
            f"the unbiased MMD estimator needs at least 2 samples on each side; got "
            f"{x.shape[0]} and {y.shape[0]}"
        )


def median_bandwidth(x: Tensor, y: Tensor) -> float:
    """The median heuristic: median Euclidean distance between distinct points of ``x`` and
    ``y`` pooled (the Gaussian kernel's ``sigma``)."""
    _check_samples(x, y)
    pooled = torch.cat([x, y]).double()
    distances = torch.cdist(pooled, pooled)
    upper = torch.triu_indices(len(pooled), len(pooled), offset=1)
    sigma = distances[upper[0], upper[1]].median().item()
    if sigma <= 0:
        raise ValueError("every point is identical: the median-heuristic bandwidth is 0")
    return sigma


def kernel_matrix(a: Tensor, b: Tensor, kernel: Kernel, bandwidth: float | None = None) -> Tensor:
    """``(len(a), len(b))`` kernel values in fp64 (``bandwidth``: the rbf kernel's ``sigma``)."""
    a, b = a.double(), b.double()
    if kernel == "rbf":
        if bandwidth is None or bandwidth <= 0:
            raise ValueError(f"the rbf kernel needs a bandwidth > 0, got {bandwidth}")
        return torch.exp(-torch.cdist(a, b).square() / (2 * bandwidth**2))
    if kernel == "polynomial":
        return (a @ b.T / a.shape[1] + 1) ** 3
    raise ValueError(f"kernel {kernel!r} is unknown; use one of {KERNELS}")


def squared_mmd(
    x: Tensor, y: Tensor, kernel: Kernel = "rbf", bandwidth: float | None = None
) -> float:
    """Unbiased estimate of ``MMD^2(P, Q)`` from ``x ~ P`` (m, d) and ``y ~ Q`` (n, d);
    ``bandwidth=None`` with the rbf kernel takes :func:`median_bandwidth` of ``x`` and ``y``."""
    _check_samples(x, y)
    if kernel == "rbf" and bandwidth is None:
        bandwidth = median_bandwidth(x, y)
    k_xx = kernel_matrix(x, x, kernel, bandwidth)
    k_yy = kernel_matrix(y, y, kernel, bandwidth)
    k_xy = kernel_matrix(x, y, kernel, bandwidth)
    m, n = len(x), len(y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return (within_x + within_y - 2 * k_xy.mean()).item()
