"""Training domains of any two-view method: Real, Syn and Real&Syn (paper, Table 2).

A data-side option, not a method: ``with_domain(method)`` composes a method class (solo-learn's
``vicreg``/``simsiam``/..., or this project's builtin ones) with the synthetic feed of ``sqsp``
(``solo_sqsp.methods.synthetic_feed``: same teacher, augmentation, per-rank seeding, checkpoint
state). Before the method sees a training batch ``[indexes, [X_1, ..., X_n], targets]``:

- ``method_kwargs.synthetic.domain: real`` (default): the batch is untouched, no teacher is built;
- ``syn``: the ``n`` views are replaced by ``n`` independently augmented views of ``B`` fresh
  teacher samples (the "Syn" rows); the student never learns from a real image: the real views
  feed the online classifier alone, through an eval-mode, gradient-free backbone
  (``solo_sqsp.methods.monitor``), so they touch neither BN statistics nor gradients;
- ``mix``: the real loader yields ``B - round(a B)`` images, ``a = method_kwargs.syn_ratio`` (a
  loader of ``B``, as solo-learn's own, is cut to that share), and each view gets ``round(a B)``
  synthetic views appended (the "Real & Syn" rows).

Synthetic samples carry target -1 and index -1: the online classifier ignores them (a batch
without any label gives it a zero loss). ``B`` is ``optimizer.batch_size`` and an epoch stays
``len(real) // B`` steps, as for ``sqsp``. Multi-crop (small crops) is not supported on the
synthetic domains.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import omegaconf
import torch
from torch import Tensor

from solo_sqsp.config import omegaconf_select
from solo_sqsp.methods.monitor import UNLABELLED, monitor_step
from solo_sqsp.methods.synthetic_feed import SyntheticFeed, add_feed_defaults, split_batch
from solo_sqsp.teachers import GeneratorTeacher

DOMAINS = ("real", "syn", "mix")


def domain_split(domain: str, batch_size: int, syn_ratio: float) -> tuple[int, int]:
    """``(synthetic, real)`` samples of each view of a batch of ``batch_size`` on ``domain``."""
    if domain not in DOMAINS:
        raise ValueError(f"method_kwargs.synthetic.domain={domain!r}: choose one of {DOMAINS}")
    if domain == "real":
        return 0, batch_size
    if domain == "syn":
        return split_batch(batch_size, 1.0)
    if syn_ratio >= 1.0:
        raise ValueError(
            f"method_kwargs.synthetic.domain=mix with syn_ratio={syn_ratio} has no real samples: "
            "set method_kwargs.syn_ratio below 1, or use domain=syn"
        )
    return split_batch(batch_size, syn_ratio)


def add_domain_defaults(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
    """``method_kwargs.synthetic.domain`` (``real``) and ``method_kwargs.syn_ratio`` (0.5), plus
    the synthetic feed's keys; a teacher is required on ``syn`` and ``mix``."""
    domain = omegaconf_select(cfg, "method_kwargs.synthetic.domain", "real")
    omegaconf.OmegaConf.update(cfg, "method_kwargs.synthetic.domain", domain, force_add=True)
    ratio = omegaconf_select(cfg, "method_kwargs.syn_ratio", 0.5)
    omegaconf.OmegaConf.update(cfg, "method_kwargs.syn_ratio", ratio, force_add=True)
    domain_split(domain, cfg.optimizer.batch_size, ratio)
    return add_feed_defaults(cfg, require_teacher=domain != "real")


class DomainMixin(SyntheticFeed):
    """Replaces (``syn``) or extends (``mix``) each training batch's views with synthetic ones."""

    # ``syn``, during a training step: the real views not yet given to the classifier, and their
    # targets (``base_training_step`` takes one per synthetic view, in order)
    _monitor: tuple[list[Tensor], Tensor] | None = None

    def __init__(self, cfg: omegaconf.DictConfig, teacher: GeneratorTeacher | None = None):
        super().__init__(cfg)
        self.domain: str = cfg.method_kwargs.synthetic.domain
        num_syn, num_real = domain_split(
            self.domain, cfg.optimizer.batch_size, cfg.method_kwargs.syn_ratio
        )
        if self.domain == "real":
            return
        if self.num_small_crops:
            raise ValueError(
                f"method_kwargs.synthetic.domain={self.domain} supports large crops only; the "
                f"config asks for {self.num_small_crops} small crops: drop them"
            )
        # On ``syn`` the real loader still runs: its B images set the epoch and feed the online
        # classifier alone.
        self.real_batch_size = num_real if self.domain == "mix" else cfg.optimizer.batch_size
        self.init_synthetic_feed(
            cfg, batch_size=num_syn, num_views=self.num_large_crops, teacher=teacher
        )

    def with_synthetic_views(self, batch: Sequence[Any]) -> list[Any]:
        """The batch the method trains on (module docstring): real views, synthetic views, or
        real views followed by synthetic ones; synthetic targets and indexes are -1."""
        indexes, views, targets = batch
        views = [views] if isinstance(views, Tensor) else list(views)
        if len(views) != self.num_large_crops:
            raise ValueError(
                f"training batch has {len(views)} views but the config asks for "
                f"{self.num_large_crops}: check augmentations[*].num_crops"
            )
        synthetic = self.next_synthetic_batch().views
        unlabelled = torch.full(
            (synthetic[0].shape[0],), UNLABELLED, dtype=targets.dtype, device=targets.device
        )
        if self.domain == "syn":
            return [unlabelled.to(indexes.dtype), synthetic, unlabelled]
        pairs = zip(views, synthetic, strict=True)
        return [
            torch.cat([indexes, unlabelled.to(indexes.dtype)]),
            [torch.cat([real, syn.to(real.dtype)]) for real, syn in pairs],
            torch.cat([targets, unlabelled]),
        ]

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Any:
        """The method's own training step on the domain's batch (on ``syn``, the classifier's
        outputs come from the real views: ``base_training_step``)."""
        if self.domain == "real":
            return super().training_step(batch, batch_idx)
        if self.domain == "mix":
            batch = self.real_share(batch)
        else:
            _, views, targets = batch
            self._monitor = ([views] if isinstance(views, Tensor) else list(views), targets)
        try:
            return super().training_step(self.with_synthetic_views(batch), batch_idx)
        finally:
            self._monitor = None

    def base_training_step(self, X: Tensor, targets: Tensor) -> dict[str, Any]:
        """The method's per-view outputs. On ``syn`` in a training step, the classifier's
        ``loss``/``acc1``/``acc5`` are those of the matching real view, whose images change
        nothing else (``monitor_step``); otherwise the classifier loss is 0 when no sample is
        labelled (cross-entropy over no targets is NaN)."""
        out = super().base_training_step(X, targets)
        if self._monitor is not None:
            views, real_targets = self._monitor
            monitor = monitor_step(self, views.pop(0), real_targets)
            out.update({key: monitor[key] for key in ("loss", "acc1", "acc5")})
        elif not bool((targets != UNLABELLED).any()):
            out["loss"] = out["logits"].sum() * 0.0
        return out


def with_domain(method: type) -> type:
    """``method`` with the ``method_kwargs.synthetic.domain`` option (idempotent)."""
    if issubclass(method, DomainMixin):
        return method

    class OnDomain(DomainMixin, method):
        @staticmethod
        def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
            """The method's defaults and checks, then the domain's."""
            return add_domain_defaults(method.add_and_assert_specific_cfg(cfg))

    OnDomain.__name__ = OnDomain.__qualname__ = method.__name__
    OnDomain.__doc__ = (
        f"{method.__name__} on the real, synthetic or mixed domain "
        "(``method_kwargs.synthetic.domain``).\n\n" + (method.__doc__ or "")
    )
    return OnDomain
