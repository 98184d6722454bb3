"""The synthetic feed: a frozen generator teacher's samples, streamed into a method's training.

One piece composed by every method that trains on teacher samples: ``sqsp`` (paper Sec. 3.2,
Fig. 2) and any two-view method on the ``syn``/``mix`` domains (``solo_sqsp.methods.domains``,
the Syn and Real&Syn rows of Table 2). It owns:

- the teacher, built from ``method_kwargs.teacher`` (``path``, ``kind``, ``features``,
  ``noise_mode``, ``class_sampling``): a plain attribute, never trained, never in ``state_dict()``
  or checkpoints;
- the synthetic views' augmentation: the real views' (``augmentations[0]``) or
  ``method_kwargs.synthetic_augmentation``, with the real views' normalisation (Sec. 4), its
  parameters drawn per sample or, with ``method_kwargs.synthetic.augment_mode: per_batch``, once
  per batch as in the reference code; none (resize and normalise only) when
  ``method_kwargs.augment_synthetic`` is False (Table 5, row a);
- the source, ``solo_sqsp.synthetic.sources.build_synthetic_source`` from
  ``method_kwargs.synthetic`` (``source: live|bank`` and the ``bank_*`` keys), made at
  ``on_fit_start`` on the training device with ``method_kwargs.seed`` and the DDP global rank,
  so every rank draws its own stream;
- the source's position in checkpoints (``sqsp_synthetic_state``): a resumed run draws exactly
  the batches the interrupted run would have drawn next.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import omegaconf
from torch import Tensor

from solo_sqsp.augment import BatchAugment
from solo_sqsp.config import omegaconf_select
from solo_sqsp.data import pretrain_normalization
from solo_sqsp.data.transforms import eval_grayscale
from solo_sqsp.synthetic.sources import (
    SYNTHETIC_DEFAULTS,
    SyntheticStream,
    build_synthetic_source,
    synthetic_settings,
)
from solo_sqsp.synthetic.stream import SyntheticBatch
from solo_sqsp.teachers import GeneratorTeacher, build_teacher

logger = logging.getLogger(__name__)

SYNTHETIC_STATE_KEY = "sqsp_synthetic_state"
FEED_DEFAULTS: dict[str, Any] = {
    "augment_synthetic": True,
    "synthetic_augmentation": None,
    "seed": 0,
    "teacher.kind": "auto",
    "teacher.features": r"synthesis\.b\d+$",
    "teacher.noise_mode": "random",
    "teacher.class_sampling": "uniform",
    **{f"synthetic.{key}": value for key, value in SYNTHETIC_DEFAULTS.items()},
}


def add_feed_defaults(cfg: omegaconf.DictConfig, require_teacher: bool) -> omegaconf.DictConfig:
    """``FEED_DEFAULTS`` under ``method_kwargs`` where unset; the synthetic source keys checked;
    ``method_kwargs.teacher.path`` required when ``require_teacher``."""
    for key, value in FEED_DEFAULTS.items():
        omegaconf.OmegaConf.update(
            cfg, f"method_kwargs.{key}", omegaconf_select(cfg, f"method_kwargs.{key}", value)
        )
    synthetic_settings(cfg.method_kwargs.synthetic)
    if require_teacher and omegaconf_select(cfg, "method_kwargs.teacher.path", None) is None:
        raise ValueError(
            "method_kwargs.teacher.path is required: a StyleGAN2-ADA network pickle, a "
            "teacher checkpoint from scripts/teacher/train_teacher.py, or module:factory"
        )
    return cfg


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


class SyntheticFeed:
    """Mixin for a method class (placed before it): call ``init_synthetic_feed`` in ``__init__``,
    then ``next_synthetic_batch()`` in a training step. Without ``init_synthetic_feed`` the hooks
    do nothing (a method on real data only)."""

    synthetic: SyntheticStream | None = None
    synthetic_batch_size: int = 0
    real_batch_size: int
    _pending_synthetic_state: dict[str, Any] | None = None

    def init_synthetic_feed(
        self,
        cfg: omegaconf.DictConfig,
        *,
        batch_size: int,
        num_views: int,
        teacher: GeneratorTeacher | None = None,
    ) -> GeneratorTeacher:
        """Build (or take) the teacher and the augmentation; the source follows at fit start."""
        kwargs = cfg.method_kwargs
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
        self.synthetic_batch_size = batch_size
        self.synthetic_num_views = num_views
        real_views = cfg.augmentations[0]
        self.normalization = pretrain_normalization(cfg, real_views)
        mean, std = self.normalization.mean, self.normalization.std
        if kwargs.augment_synthetic:
            self.synthetic_augment = BatchAugment.from_cfg(
                kwargs.synthetic_augmentation or real_views,
                mean=mean,
                std=std,
                mode=synthetic_settings(kwargs.synthetic)["augment_mode"],
            )
        elif eval_grayscale(cfg):  # the un-augmented view (as the source builds it), in gray
            self.synthetic_augment = BatchAugment.normalize_only(
                real_views.crop_size, mean, std, grayscale=True
            )
        else:
            self.synthetic_augment = None
        return teacher

    def on_fit_start(self) -> None:
        """Move the teacher to the training device and seed this rank's synthetic stream."""
        super().on_fit_start()
        if not self.synthetic_batch_size:
            return
        cfg = self.cfg
        self.teacher.to(self.device)
        self.synthetic = build_synthetic_source(
            cfg.method_kwargs.synthetic,
            self.teacher,
            batch_size=self.synthetic_batch_size,
            augment=self.synthetic_augment,
            num_views=self.synthetic_num_views,
            crop_size=cfg.augmentations[0].crop_size,
            mean=self.normalization.mean,
            std=self.normalization.std,
            seed=cfg.method_kwargs.seed,
            rank=self.global_rank,
        )
        logger.info(
            "rank %d draws synthetic stream (seed=%d, rank=%d): %d synthetic samples x %d views "
            "per step from the %s source",
            self.global_rank,
            cfg.method_kwargs.seed,
            self.global_rank,
            self.synthetic_batch_size,
            self.synthetic_num_views,
            cfg.method_kwargs.synthetic.source,
        )
        if self._pending_synthetic_state is not None:
            self.synthetic.load_state_dict(self._pending_synthetic_state)
            self._pending_synthetic_state = None

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Store the synthetic source's position so a resumed run draws the same samples."""
        super().on_save_checkpoint(checkpoint)
        if self.synthetic is not None:
            checkpoint[SYNTHETIC_STATE_KEY] = self.synthetic.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the stored position until the source exists (``on_fit_start``)."""
        super().on_load_checkpoint(checkpoint)
        self._pending_synthetic_state = checkpoint.get(SYNTHETIC_STATE_KEY)

    def real_share(self, batch: Sequence[Any]) -> Sequence[Any]:
        """The first ``real_batch_size`` samples of a training batch ``[indexes, views, targets]``
        (all of a smaller one): the method's real share of the total batch ``B`` whatever its
        loader yields, so solo-learn's own ``main_pretrain.py``, whose loader gives ``B`` real
        images, trains the same split as ours, which gives ``B - round(a B)``."""
        indexes, views, targets = batch
        keep = self.real_batch_size
        if len(targets) <= keep:
            return batch
        views = [views] if isinstance(views, Tensor) else list(views)
        return [indexes[:keep], [view[:keep] for view in views], targets[:keep]]

    def next_synthetic_batch(self) -> SyntheticBatch:
        """The next batch of the stream (``synthetic_batch_size`` samples)."""
        if self.synthetic is None:
            raise RuntimeError(
                "the synthetic source is made in on_fit_start: train through Lightning's "
                "Trainer.fit, or call on_fit_start() first"
            )
        return self.synthetic.next_batch()
