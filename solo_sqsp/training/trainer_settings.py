"""Lightning ``Trainer`` settings from a solo-learn style config, shared by every entry point.

As in solo-learn's ``main_pretrain.py``, every top-level config key that is a ``Trainer``
argument (``gradient_clip_val``, ``max_steps``, ``log_every_n_steps``, ...) is passed on.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Collection, Mapping
from typing import Any

import lightning.pytorch as pl
from omegaconf import DictConfig, OmegaConf

from solo_sqsp.config import ConfigError, omegaconf_select, uses_cpu

logger = logging.getLogger("solo_sqsp")


RUN_OWNED = {
    "callbacks": "checkpoint.* and the progress bar are built by the run",
    "logger": "the run logs to a CSV file in its folder",
    "plugins": "the run writes checkpoints atomically",
    "enable_checkpointing": "use checkpoint.enabled",
    "default_root_dir": "use checkpoint.dir",
}


def trainer_arguments() -> set[str]:
    """The keyword arguments of Lightning's ``Trainer``."""
    return set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}


def lightning_settings(
    cfg: DictConfig, defaults: Mapping[str, Any] | None = None, computed: Collection[str] = ()
) -> dict[str, Any]:
    """Trainer keyword arguments: the entry point's ``defaults``, overridden by every top-level
    config key that is a Trainer argument, then the device keys adapted to CPU (SyncBatchNorm off,
    fp16 mixed precision as fp32, no DDP strategy for one process). ``computed`` names arguments
    the caller derives from the config itself (left out here). Keys the run owns are refused.
    """
    owned = sorted(key for key in RUN_OWNED if key in cfg)
    if owned:
        raise ConfigError(
            "; ".join(f"{key} cannot be set in the config: {RUN_OWNED[key]}" for key in owned)
        )
    passed = {
        key: OmegaConf.to_object(value) if OmegaConf.is_config(value) else value
        for key, value in cfg.items()
        if key in trainer_arguments() and key not in computed
    }
    on_cpu = uses_cpu(omegaconf_select(cfg, "accelerator"))
    devices = cfg.devices
    num_devices = devices if isinstance(devices, int) else len(devices)
    strategy = omegaconf_select(cfg, "strategy") or "auto"
    if num_devices * cfg.num_nodes == 1 and strategy in ("ddp", "ddp_spawn"):
        strategy = "auto"
    precision = str(omegaconf_select(cfg, "precision", "32-true"))
    sync_batchnorm = bool(omegaconf_select(cfg, "sync_batchnorm", False))
    if on_cpu:
        if precision in ("16", "16-mixed"):
            logger.info("precision=%s is a CUDA feature: running fp32 on CPU", precision)
            precision = "32-true"
        sync_batchnorm = False
    return {
        **(defaults or {}),
        **passed,
        "accelerator": "cpu" if on_cpu else omegaconf_select(cfg, "accelerator", "auto"),
        "devices": devices if isinstance(devices, int) else list(devices),
        "num_nodes": cfg.num_nodes,
        "strategy": strategy,
        "precision": precision,
        "sync_batchnorm": sync_batchnorm and num_devices * cfg.num_nodes > 1,
        "max_epochs": cfg.max_epochs,
        "accumulate_grad_batches": omegaconf_select(cfg, "accumulate_grad_batches", 1),
    }
