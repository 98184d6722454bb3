"""Lightning ``Trainer`` settings from a solo-learn style config, shared by every entry point."""

from __future__ import annotations

import logging
from typing import Any

from omegaconf import DictConfig

from solo_sqsp.config import omegaconf_select, uses_cpu

logger = logging.getLogger("solo_sqsp")


def lightning_settings(cfg: DictConfig) -> dict[str, Any]:
    """Trainer keyword arguments from the config, adapted to CPU where CUDA-only features fail.

    On CPU: SyncBatchNorm (CUDA only) is off, fp16 mixed precision becomes fp32, and a single
    process needs no DDP strategy.
    """
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
        "accelerator": "cpu" if on_cpu else omegaconf_select(cfg, "accelerator", "auto"),
        "devices": devices if isinstance(devices, int) else list(devices),
        "num_nodes": cfg.num_nodes,
        "strategy": strategy,
        "precision": precision,
        "sync_batchnorm": sync_batchnorm and num_devices * cfg.num_nodes > 1,
        "max_epochs": cfg.max_epochs,
        "accumulate_grad_batches": omegaconf_select(cfg, "accumulate_grad_batches", 1),
    }
