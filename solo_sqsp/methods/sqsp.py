"""Squeeze and Span (Yang et al., NeurIPS 2022) as a solo-learn method, registered as ``sqsp``.

One training step (Sec. 3, Eq. 7-9 of the paper):
- Squeeze: a frozen generator teacher draws ``round(a * B)`` samples; the squeeze module maps its
  pooled block features to ``h``; the student (backbone + 5-layer projector) sees an augmented
  view of the same images and outputs ``z``; ``L_syn = w_sim MSE(h, z) + w_var v(z) + w_cov c(z)``.
- Span: the remaining ``B - round(a * B)`` real images give two views and ``L_real = VICReg``.
- ``L = a L_syn + (1 - a) L_real``; ``a = 1`` is "Squeeze" alone.
The teacher is not a submodule: it never trains, never enters ``state_dict`` or checkpoints, and
is reloaded from ``method_kwargs.teacher.path``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import omegaconf
import torch

from solo_sqsp.augment import BatchAugment
from solo_sqsp.data import pretrain_normalization
from solo_sqsp.losses import LossTerms, LossWeights, sqsp_total, squeeze_loss, vicreg_loss
from solo_sqsp.methods.base import BaseMethod, omegaconf_select
from solo_sqsp.projector import build_projector
from solo_sqsp.squeeze import SqueezeModule, check_student_width
from solo_sqsp.synthetic import SyntheticSource
from solo_sqsp.teachers import GeneratorTeacher, build_teacher

logger = logging.getLogger(__name__)


def split_batch(batch_size: int, syn_ratio: float) -> tuple[int, int]:
    """``(synthetic, real)`` sample counts of a batch of ``batch_size`` (Table 6: a = syn_ratio)."""
    if not 0.0 < syn_ratio <= 1.0:
        raise ValueError(
            f"method_kwargs.syn_ratio must be in (0, 1] (1 = Squeeze only), got {syn_ratio}"
        )
    num_syn = round(syn_ratio * batch_size)
    num_real = batch_size - num_syn
    if num_syn < 2 or (syn_ratio < 1.0 and num_real < 2):
        raise ValueError(
            f"optimizer.batch_size={batch_size} with syn_ratio={syn_ratio} gives {num_syn} "
            f"synthetic and {num_real} real samples; VICReg statistics need at least 2 of each: "
            "raise the batch size"
        )
    return num_syn, num_real


class SqueezeAndSpan(BaseMethod):
    """The ``sqsp`` method: student, projector and squeeze module trained, teacher frozen."""

    def __init__(self, cfg: omegaconf.DictConfig, teacher: GeneratorTeacher | None = None):
        super().__init__(cfg)
        kwargs = cfg.method_kwargs
        self.syn_ratio: float = float(kwargs.syn_ratio)
        self.num_syn, num_real = split_batch(cfg.optimizer.batch_size, self.syn_ratio)
        # Squeeze only (a = 1) still reads B real images a step: the online classifier's
        # labelled features, and an epoch of len(real) / B steps as in the paper.
        self.real_batch_size = num_real or cfg.optimizer.batch_size
        self.loss_weights = LossWeights(
            sim=kwargs.sim_loss_weight, var=kwargs.var_loss_weight, cov=kwargs.cov_loss_weight
        )
        self.regularize_teacher: bool = kwargs.regularize_teacher
        self.projector = build_projector(
            self.features_dim, kwargs.proj_output_dim, num_layers=kwargs.proj_layers
        )

        if teacher is None:
            spec = kwargs.teacher
            teacher = build_teacher(
                spec.path,
                kind=spec.kind,
                features=spec.features,
                noise_mode=spec.noise_mode,
                class_sampling=spec.class_sampling,
            )
        # A plain attribute, not a submodule: excluded from parameters() and state_dict().
        self.__dict__["teacher"] = teacher
        self.squeeze = SqueezeModule(
            teacher.feature_dims,
            hidden_dim=kwargs.squeeze.hidden_dim,
            out_dim=kwargs.squeeze.out_dim,
            depth=kwargs.squeeze.depth,
        )
        check_student_width(self.squeeze, kwargs.proj_output_dim)

        # Synthetic views get the real views' augmentation and normalisation (Sec. 4).
        real_views = cfg.augmentations[0]
        self.normalization = pretrain_normalization(cfg, real_views)
        self.synthetic_augment = (
            BatchAugment.from_cfg(
                kwargs.synthetic_augmentation or real_views,
                mean=self.normalization.mean,
                std=self.normalization.std,
            )
            if kwargs.augment_synthetic
            else None
        )
        self.synthetic: SyntheticSource | None = None
        self._pending_synthetic_state: dict[str, Any] | None = None

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Defaults of the ``sqsp`` keys of ``method_kwargs`` (Table 6 values)."""
        cfg = super(SqueezeAndSpan, SqueezeAndSpan).add_and_assert_specific_cfg(cfg)
        defaults: dict[str, Any] = {
            "syn_ratio": 0.5,
            "proj_output_dim": 2048,
            "proj_layers": 5,
            "sim_loss_weight": 25.0,
            "var_loss_weight": 25.0,
            "cov_loss_weight": 1.0,
            "regularize_teacher": False,
            "augment_synthetic": True,
            "synthetic_augmentation": None,
            "seed": 0,
            "squeeze.depth": 3,
            "squeeze.hidden_dim": 2048,
            "squeeze.out_dim": 2048,
            "teacher.kind": "auto",
            "teacher.features": r"synthesis\.b\d+$",
            "teacher.noise_mode": "random",
            "teacher.class_sampling": "uniform",
        }
        for key, value in defaults.items():
            omegaconf.OmegaConf.update(
                cfg, f"method_kwargs.{key}", omegaconf_select(cfg, f"method_kwargs.{key}", value)
            )
        if omegaconf_select(cfg, "method_kwargs.teacher.path", None) is None:
            raise ValueError(
                "method_kwargs.teacher.path is required: a StyleGAN2-ADA network pickle, a "
                "teacher checkpoint from scripts/teacher/train_teacher.py, or module:factory"
            )
        return cfg

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

    def on_fit_start(self) -> None:
        """Move the teacher to the training device and seed this rank's synthetic stream."""
        super().on_fit_start()
        self.teacher.to(self.device)
        self.synthetic = SyntheticSource(
            self.teacher,
            batch_size=self.num_syn,
            augment=self.synthetic_augment,
            crop_size=self.cfg.augmentations[0].crop_size,
            mean=self.normalization.mean,
            std=self.normalization.std,
            seed=self.cfg.method_kwargs.seed,
            rank=self.global_rank,
        )
        logger.info(
            "rank %d draws synthetic stream (seed=%d, rank=%d): %d synthetic + %d real per step",
            self.global_rank,
            self.synthetic.seed,
            self.synthetic.rank,
            self.num_syn,
            self.real_batch_size if self.syn_ratio < 1.0 else 0,
        )
        if self._pending_synthetic_state is not None:
            self.synthetic.load_state_dict(self._pending_synthetic_state)
            self._pending_synthetic_state = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the synthetic source's RNG state so a resumed run draws the same latents."""
        if self.synthetic is not None:
            checkpoint["sqsp_synthetic_state"] = self.synthetic.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the stored synthetic state until the source exists (``on_fit_start``)."""
        self._pending_synthetic_state = checkpoint.get("sqsp_synthetic_state")

    def _student_projection(self, images: torch.Tensor) -> torch.Tensor:
        if not self.no_channel_last:
            images = images.to(memory_format=torch.channels_last)
        return self.projector(self.backbone(images))

    def squeeze_step(self) -> LossTerms:
        """``L_syn`` on a fresh synthetic batch (Eq. 7)."""
        assert self.synthetic is not None, "on_fit_start creates the synthetic source"
        batch = self.synthetic.next_batch()
        z = self._student_projection(batch.views[0])
        h = self.squeeze(batch.features)
        return squeeze_loss(h, z, self.loss_weights, regularize_teacher=self.regularize_teacher)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> torch.Tensor:
        """``a L_syn + (1 - a) L_real`` plus the online classifier's loss (Eq. 9)."""
        out = super().training_step(batch, batch_idx)
        syn_terms = self.squeeze_step()
        real_terms = None
        if self.syn_ratio < 1.0:
            z1, z2 = out["z"][:2]
            real_terms = vicreg_loss(z1, z2, self.loss_weights)
        total = sqsp_total(syn_terms, real_terms, self.syn_ratio)
        self.log_dict(
            {f"train_{name}": value for name, value in total.log_dict().items()},
            on_epoch=True,
            sync_dist=True,
        )
        return total.total + out["loss"]
