"""Squeeze and Span (Yang et al., NeurIPS 2022) as a solo-learn method, registered as ``sqsp``.

One training step (Sec. 3, Eq. 7-9 of the paper):
- Squeeze: a frozen generator teacher draws ``round(a * B)`` samples; the squeeze module maps its
  pooled block features to ``h``; the student (backbone + projector, 5 layers in the paper) sees an
  augmented view of the same images and outputs ``z``; ``L_syn = w_sim MSE(h, z) + w_var v(z) +
  w_cov c(z)``.
- Span: the remaining ``B - round(a * B)`` real images give two views and ``L_real = VICReg``.
- ``L = a L_syn + (1 - a) L_real``; ``a = 1`` is "Squeeze" alone: the student then learns from
  synthetic images only, and the real batch feeds the online classifier alone, through an
  eval-mode, gradient-free backbone (``solo_sqsp.methods.monitor``).
The teacher is not a submodule: it never trains, never enters ``state_dict`` or checkpoints, and
is reloaded from ``method_kwargs.teacher.path``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch

from solo_sqsp.losses import (
    LOSS_WEIGHT_DEFAULTS,
    LossTerms,
    LossWeights,
    sqsp_total,
    squeeze_loss,
    vicreg_loss,
)
from solo_sqsp.methods.base import BaseMethod, set_method_defaults
from solo_sqsp.methods.monitor import monitor_step
from solo_sqsp.methods.synthetic_feed import SyntheticFeed, add_feed_defaults, split_batch
from solo_sqsp.models.heads import head_choice, vicreg_projector
from solo_sqsp.models.squeeze import SqueezeModule, check_student_width
from solo_sqsp.teachers import GeneratorTeacher

__all__ = ["SQSP_DEFAULTS", "SqueezeAndSpan", "split_batch"]


SQSP_DEFAULTS: dict[str, Any] = {
    "syn_ratio": 0.5,
    **LOSS_WEIGHT_DEFAULTS,
    "regularize_teacher": False,
    "squeeze.depth": 3,
    "squeeze.hidden_dim": 2048,
    "squeeze.out_dim": 2048,
}


class SqueezeAndSpan(SyntheticFeed, BaseMethod):
    """The ``sqsp`` method: student, projector and squeeze module trained, teacher frozen."""

    def __init__(self, cfg: omegaconf.DictConfig, teacher: GeneratorTeacher | None = None):
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.syn_ratio: float = float(kwargs.syn_ratio)
        self.num_syn, num_real = split_batch(cfg.optimizer.batch_size, self.syn_ratio)
        # Squeeze only (a = 1) still reads B real images a step, for the online classifier
        # alone (base_training_step), and an epoch of len(real) / B steps as in the paper.
        self.real_batch_size = num_real or cfg.optimizer.batch_size
        self.loss_weights = LossWeights.from_method_kwargs(kwargs)
        self.regularize_teacher: bool = kwargs.regularize_teacher
        self.projector = vicreg_projector(kwargs.head, self.features_dim, kwargs)

        teacher = self.init_synthetic_feed(
            cfg, batch_size=self.num_syn, num_views=1, teacher=teacher
        )
        self.squeeze = SqueezeModule(
            teacher.feature_dims,
            hidden_dim=kwargs.squeeze.hidden_dim,
            out_dim=kwargs.squeeze.out_dim,
            depth=kwargs.squeeze.depth,
        )
        check_student_width(self.squeeze, kwargs.proj_output_dim)

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Defaults of the ``sqsp`` keys of ``method_kwargs`` (Table 6 values); the projector's
        (``head_choice``) are the paper's, ``head: authors``, 5 layers, output 2048, unless
        ``method_kwargs.head`` says otherwise."""
        cfg = super(SqueezeAndSpan, SqueezeAndSpan).add_and_assert_specific_cfg(cfg)
        set_method_defaults(cfg, SQSP_DEFAULTS)
        head_choice(cfg, "sqsp")
        return add_feed_defaults(cfg, require_teacher=True)

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        """Backbone and classifier (base), projector and squeeze module; never the teacher."""
        return [
            *super().learnable_params,
            {"name": "projector", "params": self.projector.parameters()},
            {"name": "squeeze", "params": self.squeeze.parameters()},
        ]

    def forward(self, X: torch.Tensor) -> dict[str, Any]:
        """Backbone features, online-classifier logits and the projection ``z``."""
        out = super().forward(X)
        out["z"] = self.projector(out["feats"])
        return out

    def base_training_step(self, X: torch.Tensor, targets: torch.Tensor) -> dict[str, Any]:
        """A real view's outputs: the student's and the classifier's, or with ``a = 1`` the
        classifier's alone, leaving the student untouched (``monitor_step``)."""
        if self.syn_ratio < 1.0:
            return super().base_training_step(X, targets)
        return monitor_step(self, X, targets)

    def _student_projection(self, images: torch.Tensor) -> torch.Tensor:
        if not self.no_channel_last:
            images = images.to(memory_format=torch.channels_last)
        return self.projector(self.backbone(images))

    def squeeze_step(self) -> LossTerms:
        """``L_syn`` on a fresh synthetic batch (Eq. 7)."""
        batch = self.next_synthetic_batch()
        z = self._student_projection(batch.views[0])
        h = self.squeeze(batch.features)
        return squeeze_loss(h, z, self.loss_weights, regularize_teacher=self.regularize_teacher)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """``a L_syn + (1 - a) L_real`` plus the online classifier's loss (Eq. 9)."""
        out = super().training_step(self.real_share(batch), batch_idx)
        syn_terms = self.squeeze_step()
        real_terms = None
        if self.syn_ratio < 1.0:
            z1, z2 = out["z"][:2]
            real_terms = vicreg_loss(z1, z2, self.loss_weights)
        total = sqsp_total(syn_terms, real_terms, self.syn_ratio)
        self.log_dict(total.log_dict("train_"), on_epoch=True, sync_dist=True)
        return total.total + out["loss"]
