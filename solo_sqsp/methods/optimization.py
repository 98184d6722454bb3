"""The optimizer and learning-rate schedule of solo-learn's ``optimizer.*``/``scheduler.*`` keys.

One implementation for the built-in base method and the built-in linear model: the keys'
defaults and checks, the settings a model keeps, and ``configure_optimizers`` (SGD, LARS, Adam,
AdamW; ``warmup_cosine``/``step``/``none`` schedules, ``solo_sqsp.optim.lr_schedule``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import omegaconf
import torch
from omegaconf import OmegaConf

from solo_sqsp.config import OPTIMIZER_CLASSES, ConfigError, require, set_default
from solo_sqsp.optim.lr_schedule import DEFAULT_WARMUP_EPOCHS, SCHEDULERS, build_lr_scheduler


def split_weight_decay(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each group split in two: >= 2-D parameters keep the group's settings, biases and norm
    weights (<= 1-D) go to ``<name>_no_decay`` with ``weight_decay = 0``."""
    out = []
    for group in groups:
        params = list(group["params"])
        settings = {key: value for key, value in group.items() if key != "params"}
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        if decay:
            out.append({**settings, "params": decay})
        if no_decay:
            name = settings.get("name")
            renamed = {"name": f"{name}_no_decay"} if name else {}
            out.append({**settings, **renamed, "params": no_decay, "weight_decay": 0.0})
    return out


def set_optimization_defaults(
    cfg: omegaconf.DictConfig, required: Sequence[str] = ("batch_size", "lr", "weight_decay")
) -> str:
    """Check ``max_epochs``, ``optimizer.name`` and the ``required`` optimizer keys; write
    solo-learn's defaults of the other optimizer and scheduler keys. Returns the scheduler."""
    require(cfg, "max_epochs")
    optimizer = require(cfg, "optimizer.name", f"one of {sorted(OPTIMIZER_CLASSES)}")
    if optimizer not in OPTIMIZER_CLASSES:
        raise ConfigError(
            f"optimizer.name={optimizer!r}: choose one of {sorted(OPTIMIZER_CLASSES)}"
        )
    for key in required:
        require(cfg, f"optimizer.{key}")
    set_default(cfg, "optimizer.exclude_bias_n_norm_wd", False)
    set_default(cfg, "optimizer.kwargs", {})
    set_default(cfg, "accumulate_grad_batches", 1)

    scheduler = require(cfg, "scheduler.name", f"one of {SCHEDULERS}")
    if scheduler not in SCHEDULERS:
        raise ConfigError(f"scheduler.name={scheduler!r}: choose one of {SCHEDULERS}")
    set_default(cfg, "scheduler.lr_decay_steps", None)
    set_default(cfg, "scheduler.min_lr", 0.0)
    set_default(cfg, "scheduler.warmup_start_lr", 3e-5)
    set_default(cfg, "scheduler.warmup_epochs", DEFAULT_WARMUP_EPOCHS)
    interval = set_default(cfg, "scheduler.interval", "step")
    if interval not in ("step", "epoch"):
        raise ConfigError(f"scheduler.interval={interval!r}: choose 'step' or 'epoch'")
    return scheduler


class ScheduledOptimization:
    """Mixin of a ``LightningModule``: the optimisation settings read from a config checked by
    ``set_optimization_defaults`` and the ``configure_optimizers`` that uses them over the
    module's ``learnable_params``."""

    OPTIMIZERS: ClassVar[dict[str, type[torch.optim.Optimizer]]] = OPTIMIZER_CLASSES

    learnable_params: list[dict[str, Any]]
    trainer: Any

    def read_optimization_cfg(self, cfg: omegaconf.DictConfig, lr_scale: float = 1) -> None:
        """Keep the settings; the rates (``lr``, ``min_lr``, ``warmup_start_lr``) times
        ``lr_scale``."""
        self.max_epochs: int = cfg.max_epochs
        self.optimizer: str = cfg.optimizer.name
        self.weight_decay: float = cfg.optimizer.weight_decay
        self.extra_optimizer_args: dict[str, Any] = OmegaConf.to_container(cfg.optimizer.kwargs)
        self.exclude_bias_n_norm_wd: bool = cfg.optimizer.exclude_bias_n_norm_wd
        self.scheduler: str = cfg.scheduler.name
        self.lr_decay_steps: list[int] | None = cfg.scheduler.lr_decay_steps
        self.warmup_epochs: float = cfg.scheduler.warmup_epochs
        self.scheduler_interval: str = cfg.scheduler.interval
        self.lr: float = cfg.optimizer.lr * lr_scale
        self.min_lr: float = cfg.scheduler.min_lr * lr_scale
        self.warmup_start_lr: float = cfg.scheduler.warmup_start_lr * lr_scale

    def configure_optimizers(self) -> Any:
        """The optimizer over ``learnable_params`` and its schedule
        (``solo_sqsp.optim.lr_schedule``)."""
        groups = self.learnable_params
        if self.exclude_bias_n_norm_wd:
            groups = split_weight_decay(groups)
        static_groups = [i for i, group in enumerate(groups) if group.pop("static_lr", False)]
        optimizer = self.OPTIMIZERS[self.optimizer](
            groups, lr=self.lr, weight_decay=self.weight_decay, **self.extra_optimizer_args
        )
        if self.scheduler == "none":
            return optimizer

        # warmup_cosine counts optimizer steps or epochs (scheduler.interval); step always
        # counts epochs in lr_decay_steps, as in solo-learn.
        interval = self.scheduler_interval if self.scheduler == "warmup_cosine" else "epoch"
        if interval == "step":
            total = self.trainer.estimated_stepping_batches
            warmup = self.warmup_epochs * total / self.max_epochs
        else:
            total, warmup = self.max_epochs, self.warmup_epochs
        scheduler = build_lr_scheduler(
            optimizer,
            self.scheduler,
            warmup_steps=warmup,
            total_steps=total,
            warmup_start_lr=self.warmup_start_lr,
            min_lr=self.min_lr,
            lr_decay_steps=self.lr_decay_steps,
            static_groups=static_groups,
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": interval, "frequency": 1},
        }
