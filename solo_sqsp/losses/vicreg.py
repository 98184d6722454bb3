"""VICReg's terms and loss (paper Sec. 4.1 Eqs. 9-10, Sec. 4.2 Eq. 12), shared by Squeeze.

- invariance: mean squared error between two representations;
- variance (Eq. 9): mean over dims of ``relu(1 - sqrt(Var(z_j) + 1e-4))``, per tensor;
- covariance (Eq. 10): sum of squared off-diagonal covariance entries / D, per tensor.

The variance and covariance terms are taken over the batch gathered from all DDP ranks (with
gradients), the invariance term over the local batch, exactly as solo-learn's
``vicreg_loss_func``, so numbers are comparable with solo-learn's VICReg and do not change with
the number of GPUs.
"""

import math
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from solo_sqsp.losses.distributed import gather

VARIANCE_EPS = 1e-4


@dataclass(frozen=True)
class LossWeights:
    """Weights of the invariance, variance and covariance terms (paper: 25 / 25 / 1).

    A zero weight removes the term: it is not computed at all (Table 5 rows c and d).
    """

    sim: float = 25.0
    var: float = 25.0
    cov: float = 1.0

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"Loss weight {field.name} must be finite and >= 0, got {value}.")
        if self.sim == self.var == self.cov == 0:
            raise ValueError("All loss weights are 0: set at least one of sim, var, cov above 0.")

    @classmethod
    def from_method_kwargs(cls, kwargs: Any) -> "LossWeights":
        """The weights under ``method_kwargs.<term>_loss_weight`` (solo-learn's key names)."""
        return cls(**{field.name: kwargs[f"{field.name}_loss_weight"] for field in fields(cls)})


# ``method_kwargs`` defaults of the three weights, as solo-learn's ``vicreg`` names them.
LOSS_WEIGHT_DEFAULTS: dict[str, float] = {
    f"{field.name}_loss_weight": field.default for field in fields(LossWeights)
}


@dataclass
class LossTerms:
    """A loss value plus its unweighted terms by name, in the order they were computed.

    Names are ``"<part>/<term>"``, e.g. ``"syn/sim"``, ``"syn/var"``, ``"real/cov"``.
    """

    total: Tensor
    terms: dict[str, Tensor]

    def first_nonfinite(self) -> str | None:
        """Name of the first non-finite term; ``"total"`` if only the weighted sum overflowed."""
        if torch.isfinite(self.total).all():
            return None
        for name, value in self.terms.items():
            if not torch.isfinite(value).all():
                return name
        return "total"

    def log_dict(self, prefix: str = "") -> dict[str, Tensor]:
        """Detached ``{"loss": total, **terms}`` for a logger, each name after ``prefix``."""
        values = {"loss": self.total, **self.terms}
        return {f"{prefix}{name}": value.detach() for name, value in values.items()}


def _check_batch(z: Tensor, term: str) -> None:
    if z.dim() != 2:
        raise ValueError(f"{term} needs an (N, D) batch of representations, got {tuple(z.shape)}.")
    if z.shape[0] < 2:
        raise ValueError(
            f"{term} is a batch statistic and needs at least 2 samples, got {z.shape[0]}: "
            f"increase the batch size."
        )


def invariance_loss(a: Tensor, b: Tensor) -> Tensor:
    """Mean squared error between two ``(N, D)`` batches of representations."""
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(
            f"invariance_loss needs two (N, D) tensors of the same shape, got {tuple(a.shape)} "
            f"and {tuple(b.shape)}."
        )
    return F.mse_loss(a, b)


def variance_loss(z: Tensor) -> Tensor:
    """Eq. 9: mean over dims of ``relu(1 - std_j)``, ``std_j = sqrt(Var(z_j) + 1e-4)``."""
    _check_batch(z, "variance_loss")
    std = torch.sqrt(z.var(dim=0) + VARIANCE_EPS)
    return F.relu(1 - std).mean()


def covariance_loss(z: Tensor) -> Tensor:
    """Eq. 10: sum of squared off-diagonal entries of the covariance of ``z``, divided by D."""
    _check_batch(z, "covariance_loss")
    n, d = z.shape
    centered = z - z.mean(dim=0)
    cov = (centered.T @ centered) / (n - 1)
    return cov.fill_diagonal_(0).pow(2).sum() / d


def regularized_loss(
    sim_pair: tuple[Tensor, Tensor],
    regularized: dict[str, list[Tensor]],
    weights: LossWeights,
    prefix: str,
) -> LossTerms:
    """``w_sim * MSE(pair)`` (local batch) plus, for every group of ``regularized``, the summed
    ``w_var * v(t) + w_cov * c(t)`` of its tensors, each gathered over all ranks first."""
    weighted: list[tuple[str, float, Tensor]] = []
    if weights.sim > 0:
        weighted.append((f"{prefix}/sim", weights.sim, invariance_loss(*sim_pair)))
    if weights.var > 0 or weights.cov > 0:
        gathered = {suffix: [gather(t) for t in group] for suffix, group in regularized.items()}
        for kind, weight, term in (
            ("var", weights.var, variance_loss),
            ("cov", weights.cov, covariance_loss),
        ):
            if weight > 0:
                for suffix, group in gathered.items():
                    value = torch.stack([term(t) for t in group]).sum()
                    weighted.append((f"{prefix}/{kind}{suffix}", weight, value))
    total = torch.stack([weight * value for _, weight, value in weighted]).sum()
    return LossTerms(total=total, terms={name: value for name, _, value in weighted})


def vicreg_loss(z1: Tensor, z2: Tensor, weights: LossWeights, part: str = "real") -> LossTerms:
    """VICReg (Eq. 12): ``w_sim*MSE(z1, z2) + w_var*(v(z1) + v(z2)) + w_cov*(c(z1) + c(z2))``,
    its terms named ``<part>/sim`` etc. after the data the views come from.

    Same value and gradients as solo-learn's ``vicreg_loss_func``.
    """
    return regularized_loss((z1, z2), {"": [z1, z2]}, weights, prefix=part)
