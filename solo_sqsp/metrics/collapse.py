"""Collapse monitor of a representation (SimSiam, Sec. 4.1): the spread of normalised outputs."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def output_std(z: Tensor) -> Tensor:
    """Mean per-dimension std of the L2-normalised outputs: ``1 / sqrt(dim)`` when healthy, 0
    when collapsed (the SimSiam paper's collapse monitor)."""
    return F.normalize(z, dim=-1).std(dim=0).mean()
