"""Offline linear evaluation: config -> checks -> frozen backbone -> Lightning fit -> metrics.

What ``main_linear.py`` runs, in solo-learn's linear schema (``pretrained_feature_extractor``,
``optimizer.*`` with ``lr`` scaled by total batch / 256, ``scheduler.*``, ``finetune``,
``max_epochs``) plus ``data.crop_size``. The config, the checkpoint and the dataset files are all
checked before the first training step. The run folder ``<checkpoint.dir>/linear/<name>-<id>``
gets ``args.json``, ``metrics.json`` (final ``val_acc1``/``val_acc5``/``val_loss``, the best
``val_acc1`` over epochs, and what was evaluated) and Lightning's CSV log.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar
from omegaconf import DictConfig

from solo_sqsp.config import (
    OPTIMIZER_KWARGS_DEFAULTS,
    normalize_devices,
    require,
    set_default,
)
from solo_sqsp.data import active_backend, make_classification_dataloaders, validate_data_cfg
from solo_sqsp.evaluation.checkpoint import load_frozen_backbone
from solo_sqsp.evaluation.config import (
    dataset_num_classes,
    evaluation_run_dir,
    parse_eval_cfg,
    write_run_files,
)
from solo_sqsp.evaluation.linear_model import LinearModel, build_linear_model
from solo_sqsp.training.checkpoint_io import resume_step
from solo_sqsp.training.fit import fit_and_measure
from solo_sqsp.training.loggers import build_loggers, check_loggers
from solo_sqsp.training.trainer_settings import lightning_settings

FINAL_METRICS = ("val_acc1", "val_acc5", "val_loss")


def parse_linear_cfg(cfg: DictConfig) -> DictConfig:
    """Defaults and checks of a linear-evaluation config, in place (call once: ``optimizer.lr``
    is scaled by ``batch_size * devices * num_nodes / 256``, as solo-learn's linear parser and the
    reference ``eval_classification.py`` do)."""
    parse_eval_cfg(cfg, "linear")
    require(cfg, "max_epochs")
    set_default(cfg, "resume_from_checkpoint", None)
    set_default(cfg, "checkpoint.enabled", False)
    set_default(cfg, "checkpoint.frequency", 1)
    LinearModel.add_and_assert_specific_cfg(cfg)
    total_batch = cfg.optimizer.batch_size * normalize_devices(cfg) * cfg.num_nodes
    cfg.optimizer.lr = cfg.optimizer.lr * total_batch / 256
    for key, value in OPTIMIZER_KWARGS_DEFAULTS.get(cfg.optimizer.name, {}).items():
        set_default(cfg, f"optimizer.kwargs.{key}", value)
    return cfg


class ValidationHistory(pl.Callback):
    """``val_acc1`` after each validation epoch (for the best accuracy over training)."""

    def __init__(self) -> None:
        self.val_acc1: list[float] = []

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking and "val_acc1" in trainer.callback_metrics:
            self.val_acc1.append(float(trainer.callback_metrics["val_acc1"]))


def run_linear(cfg: DictConfig) -> dict[str, Any]:
    """Train a linear classifier on the frozen pretrained backbone; return the metrics (also
    written to ``metrics.json``)."""
    cfg = parse_linear_cfg(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    resumed_step = resume_step(cfg.resume_from_checkpoint)
    check_loggers(cfg)
    pretrained = load_frozen_backbone(cfg)
    validate_data_cfg(cfg, "classification")
    pretrained.check_input(cfg)
    train_loader, val_loader = make_classification_dataloaders(
        cfg, cfg.optimizer.batch_size, crop_size=cfg.data.crop_size
    )
    cfg.data.num_classes = dataset_num_classes(cfg, train_loader.dataset)
    if cfg.finetune:
        pretrained.module.requires_grad_(True)
    model, implementation = build_linear_model(pretrained.module, cfg)
    print(f"linear evaluation with {implementation} LinearModel; data pipeline: {active_backend()}")
    print(f"backbone: {pretrained.describe()}")

    run_dir = evaluation_run_dir(cfg, "linear")
    history = ValidationHistory()
    callbacks: list[pl.Callback] = [history, TQDMProgressBar(refresh_rate=1)]
    if cfg.checkpoint.enabled:
        callbacks.append(
            ModelCheckpoint(
                dirpath=run_dir,
                filename=f"{cfg.name}-{{epoch}}",
                every_n_epochs=cfg.checkpoint.frequency,
                save_last=True,
            )
        )
    loggers, logger_callbacks = build_loggers(cfg, run_dir, model, resumed_step)
    trainer = pl.Trainer(
        **lightning_settings(cfg, defaults={"num_sanity_val_steps": 0}),
        callbacks=callbacks + logger_callbacks,
        logger=loggers,
        enable_checkpointing=bool(cfg.checkpoint.enabled),
    )
    final, extent = fit_and_measure(
        trainer, model, train_loader, val_loader, cfg.resume_from_checkpoint, FINAL_METRICS
    )
    metrics: dict[str, Any] = {
        **final,
        "best_val_acc1": max(history.val_acc1, default=None),
        **extent,
    }
    metrics.update(
        linear_implementation=implementation,
        backbone=pretrained.spec.name,
        cifar_stem=pretrained.spec.cifar_stem,
        checkpoint=str(pretrained.checkpoint),
        dataset=cfg.data.dataset,
        crop_size=cfg.data.crop_size,
    )
    if trainer.is_global_zero:
        write_run_files(run_dir, cfg, metrics)
        accuracies = ", ".join(
            f"{key}={metrics[key]:.2f}" for key in ("val_acc1", "val_acc5") if key in metrics
        )
        print(f"final: {accuracies} (best val_acc1={metrics['best_val_acc1']})")
        print(f"run folder: {run_dir}")
    metrics["run_dir"] = str(run_dir)
    return metrics
