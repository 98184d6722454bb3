"""Pretraining run: config -> checks -> method -> Lightning fit -> ``metrics.json``.

What ``main_pretrain.py`` runs. Every check that can fail (config keys, dataset folders, teacher
file, teacher vs. crop size, the teacher's first samples, the checkpoint to resume) runs before the
first training step, and the run folder is created only after them. During the run, checkpoints are
written atomically (``solo_sqsp.training.checkpoint_io``) and a non-finite loss stops it before the
weights change (``solo_sqsp.training.nonfinite``). Each validation reads the validation split and,
with the online k-NN on, the clean training split as the k-NN's bank
(``solo_sqsp.methods.knn_bank``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from solo_sqsp.config import fit_warmup, omegaconf_select, parse_cfg
from solo_sqsp.data import (
    active_backend,
    has_validation_split,
    make_classification_dataloaders,
    make_pretrain_dataloader,
    validate_data_cfg,
)
from solo_sqsp.methods import ACTIVE_BASE, get_method
from solo_sqsp.methods.knn_bank import knn_validation_loaders
from solo_sqsp.methods.method_kwargs import check_method_kwargs
from solo_sqsp.training.checkpoint_io import AtomicCheckpointIO, resume_step
from solo_sqsp.training.fit import fit_and_measure
from solo_sqsp.training.loggers import build_loggers, check_loggers
from solo_sqsp.training.nonfinite import NonFiniteLossGuard
from solo_sqsp.training.preflight import check_method
from solo_sqsp.training.trainer_settings import lightning_settings

logger = logging.getLogger("solo_sqsp")
FINAL_METRICS = ("val_acc1", "val_acc5", "val_knn_acc1", "val_loss")


def run_dir_for(cfg: DictConfig) -> Path:
    """``<checkpoint.dir>/<method>/<name>-<id>``: the folder of this run (not created here)."""
    run_id = (
        omegaconf_select(cfg, "run_id") or time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    )
    return Path(cfg.checkpoint.dir) / cfg.method / f"{cfg.name}-{run_id}"


def steps_per_epoch(num_real: int, cfg: DictConfig, world_size: int) -> int:
    """Steps of one epoch: one pass over the real train split at total batch ``B`` (Table 6)."""
    return max(1, num_real // (cfg.optimizer.batch_size * world_size))


def run_pretrain(cfg: DictConfig, callbacks: Sequence[Callback] = ()) -> dict[str, Any]:
    """Pretrain as configured; return the final metrics (also written to ``metrics.json``).

    ``callbacks`` are added to the Trainer's own (checkpointing, progress bar, non-finite loss).
    """
    OmegaConf.set_struct(cfg, False)
    cfg = parse_cfg(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    resumed_step = resume_step(omegaconf_select(cfg, "resume_from_checkpoint"))
    validate_data_cfg(cfg, "pretrain")
    check_loggers(cfg)
    check_method_kwargs(cfg)
    fit_warmup(cfg)
    model = get_method(cfg.method)(cfg)
    check_method(model, cfg)
    if not omegaconf_select(cfg, "performance.disable_channel_last", False):
        model = model.to(memory_format=torch.channels_last)  # as solo-learn's main_pretrain
    logger.info(
        "method %s on the %s base; data pipeline: %s", cfg.method, ACTIVE_BASE, active_backend()
    )

    real_batch_size = getattr(model, "real_batch_size", cfg.optimizer.batch_size)
    train_loader = make_pretrain_dataloader(cfg, real_batch_size)
    val_loaders: DataLoader | list[DataLoader] | None = None
    if has_validation_split(cfg):
        clean_train_loader, val_loaders = make_classification_dataloaders(
            cfg,
            cfg.optimizer.batch_size,
            crop_size=cfg.augmentations[0].crop_size,
            train_augmentation=False,
        )
        if model.knn_eval:  # the k-NN's bank: the clean training split
            val_loaders = knn_validation_loaders(
                val_loaders, clean_train_loader, cfg.optimizer.batch_size
            )

    settings = lightning_settings(
        cfg,
        defaults={"num_sanity_val_steps": 0, "deterministic": False},
        computed=("limit_train_batches", "limit_val_batches"),
    )
    world_size = (
        settings["devices"] if isinstance(settings["devices"], int) else len(settings["devices"])
    ) * cfg.num_nodes
    run_dir = run_dir_for(cfg)
    checkpointing = ModelCheckpoint(
        dirpath=run_dir,
        filename=f"{cfg.name}-{{epoch}}",
        every_n_epochs=cfg.checkpoint.frequency,
        save_last=True,
        save_top_k=-1 if omegaconf_select(cfg, "checkpoint.keep_prev", False) else 1,
        monitor=None,
    )
    loggers, logger_callbacks = build_loggers(cfg, run_dir, model, resumed_step)
    trainer = pl.Trainer(
        **settings,
        limit_train_batches=min(
            steps_per_epoch(len(train_loader.dataset), cfg, world_size),
            omegaconf_select(cfg, "limit_train_batches") or sys.maxsize,
        ),
        limit_val_batches=omegaconf_select(cfg, "limit_val_batches") or 1.0,
        callbacks=[
            NonFiniteLossGuard(),
            TQDMProgressBar(refresh_rate=1),
            *([checkpointing] if cfg.checkpoint.enabled else []),
            *logger_callbacks,
            *callbacks,
        ],
        plugins=[AtomicCheckpointIO()],
        logger=loggers,
        enable_checkpointing=bool(cfg.checkpoint.enabled),
    )
    final, extent = fit_and_measure(
        trainer, model, train_loader, val_loaders, cfg.resume_from_checkpoint, FINAL_METRICS
    )
    metrics: dict[str, Any] = {**final, **extent}
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "args.json").write_text(
            json.dumps(OmegaConf.to_container(cfg, resolve=True), indent=2)
        )
        (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
        summary = ", ".join(
            f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()
        )
        print(f"final: {summary}")
        print(f"run folder: {run_dir}")
    metrics["run_dir"] = str(run_dir)
    return metrics
