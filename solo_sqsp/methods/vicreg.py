"""VICReg (Bardes et al., ICLR 2022) on the builtin base: the ``vicreg`` method without solo-learn.

Same config keys and network as solo-learn's ``vicreg``: projector ``Linear(d, h), BN, ReLU,
Linear(h, h), BN, ReLU, Linear(h, o)`` (``h = proj_hidden_dim``, ``o = proj_output_dim``) and the
loss of this project's ``solo_sqsp.losses.vicreg_loss`` (the paper's Eq. 12, the span loss of
``sqsp``) with weights ``sim_loss_weight``/``var_loss_weight``/``cov_loss_weight`` (25/25/1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
from torch import nn

from solo_sqsp.losses import LossWeights, vicreg_loss
from solo_sqsp.methods.base import BaseMethod, set_method_defaults


class VICReg(BaseMethod):
    """Backbone + 3-layer projector trained with VICReg on two views."""

    def __init__(self, cfg: omegaconf.DictConfig) -> None:
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.loss_weights = LossWeights(
            sim=kwargs.sim_loss_weight, var=kwargs.var_loss_weight, cov=kwargs.cov_loss_weight
        )
        hidden, out = kwargs.proj_hidden_dim, kwargs.proj_output_dim
        self.projector = nn.Sequential(
            nn.Linear(self.features_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, out),
        )

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """solo-learn's ``vicreg`` defaults: widths 2048, weights 25 / 25 / 1."""
        cfg = super(VICReg, VICReg).add_and_assert_specific_cfg(cfg)
        set_method_defaults(
            cfg,
            {
                "proj_hidden_dim": 2048,
                "proj_output_dim": 2048,
                "sim_loss_weight": 25.0,
                "var_loss_weight": 25.0,
                "cov_loss_weight": 1.0,
            },
        )
        return cfg

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        """Backbone and classifier (base) plus the projector."""
        return [
            *super().learnable_params,
            {"name": "projector", "params": self.projector.parameters()},
        ]

    def forward(self, X: torch.Tensor) -> dict[str, Any]:
        """Backbone features, online-classifier logits and the projection ``z``."""
        out = super().forward(X)
        out["z"] = self.projector(out["feats"])
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """VICReg of the two views' projections plus the online classifier's loss."""
        out = super().training_step(batch, batch_idx)
        z1, z2 = out["z"][:2]
        terms = vicreg_loss(z1, z2, self.loss_weights)
        self.log_dict(
            {f"train_vicreg_{name}": value for name, value in terms.log_dict().items()},
            on_epoch=True,
            sync_dist=True,
        )
        return terms.total + out["loss"]
