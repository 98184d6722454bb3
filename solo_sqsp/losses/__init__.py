"""Losses: VICReg's terms and loss (``vicreg``), Squeeze and Squeeze-and-Span (``sqsp``)."""

from solo_sqsp.losses.sqsp import sqsp_total, squeeze_loss
from solo_sqsp.losses.vicreg import (
    LOSS_WEIGHT_DEFAULTS,
    VARIANCE_EPS,
    LossTerms,
    LossWeights,
    covariance_loss,
    invariance_loss,
    variance_loss,
    vicreg_loss,
)

__all__ = [
    "LOSS_WEIGHT_DEFAULTS",
    "VARIANCE_EPS",
    "LossTerms",
    "LossWeights",
    "covariance_loss",
    "invariance_loss",
    "sqsp_total",
    "squeeze_loss",
    "variance_loss",
    "vicreg_loss",
]
