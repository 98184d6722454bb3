"""The loggers of a run, as solo-learn's entry points build them, plus the resumable CSV log.

``wandb.enabled``: a ``WandbLogger`` (``wandb.project``, ``entity``, ``offline``; files in the
run folder), the hyperparameters, gradients every 100 steps and a per-step
``LearningRateMonitor``. ``tensorboard.enabled``: a ``TensorBoardLogger`` in the run folder.
The CSV log (``csv_log``) is always written. ``check_loggers`` runs before any run folder.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, LearningRateMonitor
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from solo_sqsp.config import ConfigError, omegaconf_select
from solo_sqsp.training.csv_log import ResumableCSVLogger

# key -> (module that must import, extra that installs it)
LOGGER_PACKAGES = {
    "wandb.enabled": (("wandb",), "wandb"),
    "tensorboard.enabled": (("tensorboard", "tensorboardX"), "tensorboard"),
}


def check_loggers(cfg: DictConfig) -> None:
    """ConfigError naming the key and the extra when an enabled logger's package is missing."""
    for key, (modules, extra) in LOGGER_PACKAGES.items():
        if not omegaconf_select(cfg, key, False):
            continue
        if not any(importlib.util.find_spec(module) for module in modules):
            raise ConfigError(
                f"{key}=True needs the {modules[0]} package: pip install -e '.[{extra}]' "
                f"(or set {key}=False)"
            )


def build_loggers(
    cfg: DictConfig, run_dir: Path, model: pl.LightningModule, resumed_step: int | None
) -> tuple[list[Logger], list[Callback]]:
    """The run's loggers and the callbacks they need (see the module docstring)."""
    loggers: list[Logger] = [ResumableCSVLogger(run_dir, resumed_step=resumed_step)]
    callbacks: list[Callback] = []
    if omegaconf_select(cfg, "wandb.enabled", False):
        wandb_logger = WandbLogger(
            name=cfg.name,
            project=omegaconf_select(cfg, "wandb.project", "solo-learn"),
            entity=omegaconf_select(cfg, "wandb.entity"),
            offline=omegaconf_select(cfg, "wandb.offline", False),
            save_dir=str(run_dir),
        )
        wandb_logger.watch(model, log="gradients", log_freq=100)
        wandb_logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
        loggers.append(wandb_logger)
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if omegaconf_select(cfg, "tensorboard.enabled", False):
        loggers.append(TensorBoardLogger(str(run_dir), name="tensorboard", version=""))
    return loggers, callbacks
