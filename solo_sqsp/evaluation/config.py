"""Config keys shared by linear and k-NN evaluation (solo-learn's linear schema), and the run
folder they write to.

``pretrained_feature_extractor`` (a checkpoint or a pretraining run folder), ``name``, ``data.*``
(as for pretraining, plus ``data.crop_size``: the evaluation image size, the dataset's own when
unset), ``seed``, ``checkpoint.dir``, ``run_id`` and the Lightning keys ``accelerator``,
``devices``, ``num_nodes``, ``strategy``, ``precision``.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any, Literal

import torch
from omegaconf import DictConfig, OmegaConf

from solo_sqsp.config import (
    NUM_CLASSES_PER_DATASET,
    ConfigError,
    normalize_devices,
    omegaconf_select,
    require,
    set_default,
)

Stage = Literal["linear", "knn"]


def parse_eval_cfg(cfg: DictConfig, stage: Stage) -> DictConfig:
    """Fill the shared defaults of ``stage`` in place and check the shared keys; return ``cfg``."""
    OmegaConf.set_struct(cfg, False)
    set_default(cfg, "name", f"{stage}-eval")
    set_default(cfg, "pretrained_feature_extractor", None)
    set_default(cfg, "pretrain_method", None)
    require(cfg, "data.dataset", "the dataset to evaluate on, e.g. cifar10")
    set_default(cfg, "data.train_path", None)
    set_default(cfg, "data.val_path", None)
    set_default(cfg, "data.format", "image_folder")
    set_default(cfg, "data.num_workers", min(4, os.cpu_count() or 1))
    crop_size = set_default(cfg, "data.crop_size", None)
    if crop_size is not None and (not isinstance(crop_size, int) or crop_size < 1):
        raise ConfigError(f"data.crop_size={crop_size!r}: expected a positive image size in px")
    set_default(cfg, "seed", 5)
    set_default(cfg, "checkpoint.dir", "trained_models")
    accelerator = set_default(cfg, "accelerator", "auto")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"accelerator={accelerator!r} but torch sees no CUDA device: pass accelerator=cpu "
            "(or auto)"
        )
    set_default(cfg, "num_nodes", 1)
    set_default(cfg, "strategy", None)
    normalize_devices(cfg)
    return cfg


def dataset_num_classes(cfg: DictConfig, train_dataset: Any) -> int:
    """The class count of a known dataset, else ``data.num_classes``, else the training split's
    ``classes`` (image folders)."""
    known = NUM_CLASSES_PER_DATASET.get(cfg.data.dataset)
    if known is not None:
        return known
    explicit = omegaconf_select(cfg, "data.num_classes")
    if explicit is not None:
        return int(explicit)
    classes = getattr(train_dataset, "classes", None)
    if not classes:
        raise ConfigError(
            f"data.num_classes is needed: the {cfg.data.dataset} training split does not list "
            "its classes"
        )
    return len(classes)


def evaluation_run_dir(cfg: DictConfig, stage: Stage) -> Path:
    """``<checkpoint.dir>/<stage>/<name>-<run_id>`` (solo-learn keeps linear runs under
    ``<checkpoint.dir>/linear``); not created here."""
    run_id = omegaconf_select(cfg, "run_id") or (
        time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:4]
    )
    return Path(cfg.checkpoint.dir) / stage / f"{cfg.name}-{run_id}"


def write_run_files(run_dir: Path, cfg: DictConfig, metrics: dict[str, Any]) -> None:
    """``args.json`` (the resolved config) and ``metrics.json`` in ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(
        json.dumps(OmegaConf.to_container(cfg, resolve=True), indent=2)
    )
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
