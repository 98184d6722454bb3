"""SimSiam (Chen & He, CVPR 2021) on the builtin base: the ``simsiam`` method without solo-learn.

Same config keys and network as solo-learn's ``simsiam``: projector ``Linear(d, h), BN, ReLU,
Linear(h, h), BN, ReLU, Linear(h, o), BN`` (no bias before a BN, no affine in the last BN),
predictor ``Linear(o, p), BN, ReLU, Linear(p, o)`` trained at a fixed learning rate
(``static_lr``), and the symmetrised negative cosine loss with stop-gradient (SimSiam, Eq. 2).
``method_kwargs.head: authors`` swaps in the paper's reference projector (``proj_layers`` linear
layers of width ``d``, default 2, see ``solo_sqsp.models.heads``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
import torch.nn.functional as F
from torch import Tensor

from solo_sqsp.methods.base import BaseMethod
from solo_sqsp.metrics.collapse import output_std
from solo_sqsp.models.heads import head_choice, simsiam_heads


def negative_cosine_loss(p: Tensor, z: Tensor) -> Tensor:
    """``-mean_i cos(p_i, stopgrad(z_i))``: SimSiam's D(p, z), in [-1, 1]."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


def simsiam_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """SimSiam's symmetrised loss ``D(p1, z2) / 2 + D(p2, z1) / 2``."""
    return negative_cosine_loss(p1, z2) / 2 + negative_cosine_loss(p2, z1) / 2


class SimSiam(BaseMethod):
    """Backbone + projector + predictor trained with SimSiam on two views."""

    def __init__(self, cfg: omegaconf.DictConfig) -> None:
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.projector, self.predictor = simsiam_heads(kwargs.head, self.features_dim, kwargs)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """solo-learn's ``simsiam`` CIFAR settings: projector 2048, predictor 512, ``head:
        solo``."""
        cfg = super(SimSiam, SimSiam).add_and_assert_specific_cfg(cfg)
        head_choice(cfg, "simsiam")  # and its widths
        return cfg

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        """Backbone and classifier (base), projector, and the predictor at a fixed rate."""
        return [
            *super().learnable_params,
            {"name": "projector", "params": self.projector.parameters()},
            {"name": "predictor", "params": self.predictor.parameters(), "static_lr": True},
        ]

    def forward(self, X: torch.Tensor) -> dict[str, Any]:
        """Backbone features, logits, projection ``z`` and prediction ``p``."""
        out = super().forward(X)
        out["z"] = self.projector(out["feats"])
        out["p"] = self.predictor(out["z"])
        return out

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """SimSiam loss of the two views plus the online classifier's loss."""
        out = super().training_step(batch, batch_idx)
        (z1, z2), (p1, p2) = out["z"][:2], out["p"][:2]
        loss = simsiam_loss(p1, p2, z1, z2)
        self.log_dict(
            {
                "train_neg_cos_sim": loss,
                "train_z_std": (output_std(z1) + output_std(z2)) / 2,
            },
            on_epoch=True,
            sync_dist=True,
        )
        return loss + out["loss"]
