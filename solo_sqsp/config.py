"""Pretraining config: solo-learn's Hydra schema, defaults and checks, runnable on CPU too.

``parse_cfg`` follows solo-learn's ``solo/args/pretrain.py``: defaults for checkpointing,
auto-resume, data, wandb and Lightning keys; ``data.num_classes`` from the dataset name;
``data.num_large_crops`` / ``data.num_small_crops`` from ``augmentations``; the linear
learning-rate scaling ``lr = base_lr * total_batch / 256`` (the paper's rule, Table 6); optimizer
kwargs defaults. What it adds: the embedded ``digits`` dataset, ``devices`` given as a count or as
a list (Lightning's CPU accelerator accepts only a count, solo-learn computes
``len(cfg.devices)``), and errors that name the offending key instead of bare asserts.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from solo_sqsp.optim.lars import LARS
from solo_sqsp.optim.lr_schedule import DEFAULT_WARMUP_EPOCHS

NUM_CLASSES_PER_DATASET = {
    "cifar10": 10,
    "cifar100": 100,
    "stl10": 10,
    "imagenet": 1000,
    "imagenet100": 100,
    "digits": 10,
}
EMBEDDED_DATASETS = ("digits",)
SUPPORTED_DATASETS = (*NUM_CLASSES_PER_DATASET, "custom")
OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "lars": LARS,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}
OPTIMIZER_KWARGS_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.9},
    "lars": {"momentum": 0.9, "eta": 1e-3, "clip_lr": False, "exclude_bias_n_norm": False},
    "adam": {},
    "adamw": {"betas": [0.9, 0.999]},
}


class ConfigError(ValueError):
    """A config key is missing or has a value this project cannot use."""


def omegaconf_select(cfg: DictConfig, key: str, default: Any = None) -> Any:
    """``cfg`` at dotted ``key`` or ``default`` when absent; the string ``"None"`` reads as None."""
    value = OmegaConf.select(cfg, key, default=default)
    return None if value == "None" else value


def set_default(cfg: DictConfig, key: str, default: Any) -> Any:
    """Write ``default`` at dotted ``key`` unless a value is there; return the value in ``cfg``."""
    value = omegaconf_select(cfg, key, default)
    OmegaConf.update(cfg, key, value, force_add=True)
    return value


def require(cfg: DictConfig, key: str, hint: str = "") -> Any:
    """The value at dotted ``key``; ConfigError naming the key when absent, ``???`` or None."""
    value = omegaconf_select(cfg, key)
    if value is None:
        raise ConfigError(f"config key '{key}' is required{': ' + hint if hint else ''}")
    return value


def require_number(
    cfg: DictConfig, key: str, low: float, *, above: bool = False, integer: bool = False
) -> float:
    """The number at dotted ``key``, at least ``low`` (above it when ``above``); else a
    ConfigError naming the key and the value as typed (checked before any run folder exists)."""
    value = require(cfg, key)
    kind = "an integer" if integer else "a number"
    bound = f"{'>' if above else '>='} {low:g}"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (integer and not isinstance(value, int))
    ):
        raise ConfigError(f"{key}={value!r} is not {kind}; expected {kind} {bound}")
    if not (value > low if above else value >= low):  # NaN fails both
        raise ConfigError(f"{key}={value!r} is out of range; expected {kind} {bound}")
    return value


def uses_cpu(accelerator: str | None) -> bool:
    """True when Lightning will run on CPU: ``cpu``, or ``auto``/unset without CUDA."""
    return accelerator == "cpu" or (accelerator in (None, "auto") and not torch.cuda.is_available())


def count_devices(devices: Any, on_cpu: bool) -> int:
    """Number of processes per node for Lightning's ``devices``: ``2``, ``"2"``, ``[0, 1]``,
    ``"0,1"`` or ``"auto"`` (1 on CPU, every visible GPU otherwise)."""
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto":
            return 1 if on_cpu else max(1, torch.cuda.device_count())
        if "," in text:
            devices = [part for part in text.split(",") if part.strip()]
        elif text.lstrip("-").isdigit():
            devices = int(text)
    if isinstance(devices, bool):
        raise ConfigError(f"devices must be a count or a list of device ids, got {devices!r}")
    if isinstance(devices, int):
        if devices == -1 and not on_cpu:
            return max(1, torch.cuda.device_count())
        if devices >= 1:
            return devices
    elif isinstance(devices, (list, tuple, ListConfig)) and len(devices) > 0:
        return len(devices)
    raise ConfigError(
        f"devices={devices!r} is not usable: give a count >= 1 (e.g. devices=2), a list of "
        "GPU ids (e.g. devices=[0,1]) or 'auto'"
    )


def normalize_devices(cfg: DictConfig) -> int:
    """Resolve ``cfg.devices`` (default 1) to its process count; on CPU, store it as that count."""
    on_cpu = uses_cpu(omegaconf_select(cfg, "accelerator"))
    devices = set_default(cfg, "devices", 1)
    count = count_devices(devices, on_cpu)
    if on_cpu:
        cfg.devices = count
    return count


def count_crops(augmentations: Any) -> tuple[int, int]:
    """``(num_large_crops, num_small_crops)``: crops the size of the first pipeline's are large."""
    if not isinstance(augmentations, (Sequence, ListConfig)) or len(augmentations) == 0:
        raise ConfigError(
            "config key 'augmentations' must be a non-empty list of pipelines, each with "
            "crop_size and num_crops (solo-learn's schema, e.g. scripts/pretrain/*/augmentations)"
        )
    for index, pipeline in enumerate(augmentations):
        for key in ("crop_size", "num_crops"):
            if omegaconf_select(pipeline, key) is None:
                raise ConfigError(f"augmentations[{index}] has no '{key}'")
    large_size = augmentations[0].crop_size
    num_large = sum(p.num_crops for p in augmentations if p.crop_size == large_size)
    num_small = sum(p.num_crops for p in augmentations if p.crop_size != large_size)
    return num_large, num_small


def _num_classes(cfg: DictConfig) -> int:
    dataset = cfg.data.dataset
    if dataset in NUM_CLASSES_PER_DATASET:
        return NUM_CLASSES_PER_DATASET[dataset]
    explicit = omegaconf_select(cfg, "data.num_classes")
    if explicit is not None:
        return int(explicit)
    train_path = cfg.data.train_path
    if not os.path.exists(train_path):
        raise ConfigError(
            f"data.train_path={train_path!r} does not exist: fix the path to your image folder "
            "(one sub-folder per class)"
        )
    if not os.path.isdir(train_path):
        raise ConfigError(
            f"data.train_path={train_path!r} is not a folder: a custom dataset needs an image "
            "folder (one sub-folder per class) or an explicit data.num_classes"
        )
    return max(1, sum(entry.is_dir() for entry in os.scandir(train_path)))


def _add_data_defaults(cfg: DictConfig) -> None:
    dataset = require(cfg, "data.dataset", f"one of {', '.join(SUPPORTED_DATASETS)}")
    if dataset not in SUPPORTED_DATASETS:
        raise ConfigError(
            f"data.dataset={dataset!r} is not supported; choose one of "
            f"{', '.join(SUPPORTED_DATASETS)}"
        )
    if dataset in EMBEDDED_DATASETS:
        set_default(cfg, "data.train_path", None)
    else:
        require(cfg, "data.train_path", f"the folder holding the {dataset} training data")
    set_default(cfg, "data.val_path", None)
    set_default(cfg, "data.format", "image_folder")
    set_default(cfg, "data.no_labels", False)
    set_default(cfg, "data.fraction", -1)
    set_default(cfg, "data.num_workers", min(4, os.cpu_count() or 1))
    set_default(cfg, "debug_augmentations", False)
    if cfg.data.format == "dali" and dataset not in ("imagenet100", "imagenet", "custom"):
        raise ConfigError(f"data.format='dali' supports imagenet100/imagenet/custom, not {dataset}")
    cfg.data.num_classes = _num_classes(cfg)
    cfg.data.num_large_crops, cfg.data.num_small_crops = count_crops(
        omegaconf_select(cfg, "augmentations")
    )


# solo-learn switches this package does not implement: refused rather than ignored.
REFUSED_SWITCHES = {
    "auto_resume.enabled": (
        "resume a run explicitly with resume_from_checkpoint=<run folder>/last.ckpt (the run "
        "folder is named by run_id; the tables resume by themselves)"
    ),
    "auto_umap.enabled": (
        "there is no UMAP callback during training; set it to False (python -m "
        "solo_sqsp.analysis embed plots 2-D embeddings, with UMAP after pip install -e '.[umap]')"
    ),
}


def _add_run_defaults(cfg: DictConfig) -> None:
    set_default(cfg, "checkpoint.enabled", False)
    set_default(cfg, "checkpoint.dir", "trained_models")
    set_default(cfg, "checkpoint.frequency", 1)
    set_default(cfg, "checkpoint.keep_prev", False)
    set_default(cfg, "auto_resume.enabled", False)
    set_default(cfg, "auto_resume.max_hours", 36)
    set_default(cfg, "wandb.enabled", False)
    set_default(cfg, "wandb.entity", None)
    set_default(cfg, "wandb.project", "solo-learn")
    set_default(cfg, "wandb.offline", False)
    set_default(cfg, "tensorboard.enabled", False)
    for key, fix in REFUSED_SWITCHES.items():
        if omegaconf_select(cfg, key, False):
            raise ConfigError(f"{key}=True is not supported here: {fix}")
    set_default(cfg, "seed", 5)
    set_default(cfg, "resume_from_checkpoint", None)
    set_default(cfg, "strategy", None)
    set_default(cfg, "num_nodes", 1)


def _add_optimizer_defaults(cfg: DictConfig, num_devices: int) -> None:
    name = require(cfg, "optimizer.name", f"one of {', '.join(OPTIMIZER_KWARGS_DEFAULTS)}")
    if name not in OPTIMIZER_KWARGS_DEFAULTS:
        raise ConfigError(
            f"optimizer.name={name!r} is not supported; choose one of "
            f"{', '.join(OPTIMIZER_KWARGS_DEFAULTS)}"
        )
    batch_size = require_number(cfg, "optimizer.batch_size", 1, integer=True)
    require_number(cfg, "optimizer.lr", 0, above=True)
    require_number(cfg, "optimizer.classifier_lr", 0, above=True)
    require_number(cfg, "optimizer.weight_decay", 0)
    scale = batch_size * num_devices * cfg.num_nodes / 256
    cfg.optimizer.lr = cfg.optimizer.lr * scale
    cfg.optimizer.classifier_lr = cfg.optimizer.classifier_lr * scale
    set_default(cfg, "optimizer.kwargs", {})
    for key, value in OPTIMIZER_KWARGS_DEFAULTS[name].items():
        set_default(cfg, f"optimizer.kwargs.{key}", value)
    check_optimizer_kwargs(name, cfg.optimizer.kwargs)


def check_optimizer_kwargs(name: str, kwargs: Any) -> None:
    """ConfigError naming every key of ``optimizer.kwargs`` that optimizer ``name`` does not take
    (``lr`` and ``weight_decay`` have their own keys), with the ones it takes."""
    parameters = inspect.signature(OPTIMIZER_CLASSES[name]).parameters
    accepted = sorted(set(parameters) - {"params", "lr", "weight_decay"})
    unknown = sorted(str(key) for key in kwargs if key not in accepted)
    if unknown:
        raise ConfigError(
            f"optimizer.kwargs.{', optimizer.kwargs.'.join(unknown)} not taken by "
            f"optimizer.name={name!r} ({OPTIMIZER_CLASSES[name].__name__}); it takes "
            f"{', '.join(accepted)}. Remove the key (on the command line: "
            f"'~optimizer.kwargs.{unknown[0]}')"
        )


def parse_cfg(cfg: DictConfig) -> DictConfig:
    """Fill defaults and check a pretraining config in place (solo-learn's schema); return it.

    Call once: the learning rates are scaled by ``batch_size * devices * num_nodes / 256``.
    Unlike solo-learn, ``optimizer.classifier_lr`` is required and scaled even without
    ``data.val_path`` (the online classifier trains either way).
    """
    OmegaConf.set_struct(cfg, False)
    require(cfg, "method", "the registered method name, e.g. sqsp")
    require_number(cfg, "max_epochs", 1, integer=True)
    _add_run_defaults(cfg)
    _add_data_defaults(cfg)
    _add_optimizer_defaults(cfg, normalize_devices(cfg))
    return cfg


def set_method_defaults(cfg: DictConfig, defaults: dict[str, Any]) -> None:
    """``method_kwargs.<key> = value`` for every (dotted) key of ``defaults`` unset in ``cfg``."""
    for key, value in defaults.items():
        OmegaConf.update(
            cfg, f"method_kwargs.{key}", omegaconf_select(cfg, f"method_kwargs.{key}", value)
        )


def fit_warmup(cfg: DictConfig) -> None:
    """Shorten a ``warmup_cosine`` warm-up as long as the run (the quick try ``max_epochs=1``) to
    a tenth of the run, with a one-line warning naming the key; both bases default to
    ``DEFAULT_WARMUP_EPOCHS``. The warm-up is ``warmup_epochs / max_epochs`` of the run whether
    the schedule steps per epoch or per step."""
    if omegaconf_select(cfg, "scheduler.name") != "warmup_cosine":
        return
    warmup = omegaconf_select(cfg, "scheduler.warmup_epochs", DEFAULT_WARMUP_EPOCHS)
    if warmup < cfg.max_epochs:
        return
    shortened = cfg.max_epochs / 10
    warnings.warn(
        f"scheduler.warmup_epochs={warmup} is not shorter than max_epochs={cfg.max_epochs}: "
        f"warming up for {shortened:g} epochs instead",
        stacklevel=2,
    )
    OmegaConf.update(cfg, "scheduler.warmup_epochs", shortened, force_add=True)
