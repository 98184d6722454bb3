"""Fit a Lightning trainer and read what the run ends with, shared by every entry point."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl


def fit_and_measure(
    trainer: pl.Trainer,
    model: pl.LightningModule,
    train_loader: Any,
    val_loaders: Any,
    ckpt_path: str | None,
    metric_names: Sequence[str],
) -> tuple[dict[str, float], dict[str, Any]]:
    """``trainer.fit``; then ``(final, extent)``: the last logged value of each of
    ``metric_names`` that was logged, and the run's ``epochs``, ``steps`` and ``wall_s``."""
    start = time.time()
    trainer.fit(model, train_loader, val_loaders, ckpt_path=ckpt_path)
    final = {
        key: float(trainer.callback_metrics[key])
        for key in metric_names
        if key in trainer.callback_metrics
    }
    extent = {
        "epochs": trainer.current_epoch,
        "steps": trainer.global_step,
        "wall_s": round(time.time() - start, 1),
    }
    return final, extent
