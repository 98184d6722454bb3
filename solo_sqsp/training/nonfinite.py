"""Numerical faults: stop a run at the first non-finite loss, before it reaches the weights.

``NonFiniteLossGuard`` checks the loss of every training step in ``on_before_backward``: before
the backward pass and the optimizer step, so the weights in memory and every checkpoint on disk
stay those of the last good step (no checkpoint is written for the bad state: the run stops
with ``NonFiniteError``). The message names the global step and the logged loss terms
(``train_*`` values a method logs, e.g. the ``LossTerms`` of ``solo_sqsp.losses``) that are
non-finite.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

TRAIN_PREFIX = "train_"
EPOCH_SUFFIX = "_epoch"
STEP_SUFFIX = "_step"


class NonFiniteError(FloatingPointError):
    """A training loss (or a teacher output) is NaN or infinite."""


def non_finite_terms(metrics: Mapping[str, Any]) -> list[str]:
    """Names of the step-level ``train_*`` values in ``metrics`` that are NaN or infinite, once
    each (``name`` and Lightning's ``name_step`` copy are one term; ``name_epoch`` aggregates
    are left out: they mix earlier steps in)."""
    bad = set()
    for name, value in metrics.items():
        if not name.startswith(TRAIN_PREFIX) or name.endswith(EPOCH_SUFFIX):
            continue
        number = value.detach().float() if isinstance(value, torch.Tensor) else value
        finite = (
            bool(torch.isfinite(number).all())
            if isinstance(number, torch.Tensor)
            else math.isfinite(float(number))
        )
        if not finite:
            bad.add(name.removesuffix(STEP_SUFFIX))
    return sorted(bad)


class NonFiniteLossGuard(Callback):
    """Raise ``NonFiniteError`` when a training step's loss is not finite."""

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        local_bad = (~torch.isfinite(loss.detach())).any().float()
        # Under DDP every rank must stop at the same step, or the others hang in backward.
        if not bool(trainer.strategy.reduce(local_bad, reduce_op="max")):
            return
        where = (
            f"non-finite training loss ({float(loss.detach().float().mean())})"
            if bool(local_bad)
            else f"non-finite training loss on another rank than {trainer.global_rank}"
        )
        terms = non_finite_terms(trainer.callback_metrics) or ["(no logged term is non-finite)"]
        raise NonFiniteError(
            f"{where} at global step {trainer.global_step} (epoch {trainer.current_epoch}); "
            f"non-finite terms: {', '.join(terms)}. The run stopped before this step changed the "
            "weights; the last checkpoint written before it is kept. Fix: lower optimizer.lr, "
            "check the data and the teacher for NaN/inf, or use precision=32"
        )
