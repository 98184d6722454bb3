"""VICReg (Bardes et al., ICLR 2022) on the builtin base: the ``vicreg`` method without solo-learn.

Same config keys and network as solo-learn's ``vicreg``: projector ``Linear(d, h), BN, ReLU,
Linear(h, h), BN, ReLU, Linear(h, o)`` (``h = proj_hidden_dim``, ``o = proj_output_dim``) and the
loss of this project's ``solo_sqsp.losses.vicreg_loss`` (the paper's Eq. 12, the span loss of
``sqsp``) with weights ``sim_loss_weight``/``var_loss_weight``/``cov_loss_weight`` (25/25/1).
``method_kwargs.head: authors`` swaps in the paper's reference projector (``proj_layers`` linear
layers of width ``d``, see ``solo_sqsp.models.heads``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch

from solo_sqsp.losses import LOSS_WEIGHT_DEFAULTS, LossWeights, vicreg_loss
from solo_sqsp.methods.base import BaseMethod, set_method_defaults
from solo_sqsp.models.heads import head_choice, vicreg_projector


class VICReg(BaseMethod):
    """Backbone + projector (solo-learn's or the reference code's) trained with VICReg on two
    views."""

    def __init__(self, cfg: omegaconf.DictConfig) -> None:
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.loss_weights = LossWeights.from_method_kwargs(kwargs)
        self.projector = vicreg_projector(kwargs.head, self.features_dim, kwargs)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """solo-learn's ``vicreg`` defaults: weights 25 / 25 / 1, ``head: solo`` and widths 2048
        (``head_choice``)."""
        cfg = super(VICReg, VICReg).add_and_assert_specific_cfg(cfg)
        head_choice(cfg, "vicreg")
        set_method_defaults(cfg, LOSS_WEIGHT_DEFAULTS)
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
        # terms named after the domain (``with_domain``): real, syn or mix
        terms = vicreg_loss(z1, z2, self.loss_weights, part=getattr(self, "domain", "real"))
        self.log_dict(terms.log_dict("train_vicreg_"), on_epoch=True, sync_dist=True)
        return terms.total + out["loss"]
