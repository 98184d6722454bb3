"""Offline weighted k-NN evaluation of a frozen backbone (solo-learn's ``main_knn``).

Backbone features of the whole training split and of the validation split, both through the
validation transform (no augmentation, every image once), then the weighted k-NN of
``solo_sqsp.metrics.knn_classifier`` for every combination of ``knn.k``, ``knn.temperature`` (cosine
only: the euclidean weight has no temperature) and ``knn.distance_function``. The paper's reference
code monitors k-NN with k=200, T=0.1, cosine, at the pretraining image size (``src/models/knn.py``).
The run folder ``<checkpoint.dir>/knn/<name>-<id>`` gets ``args.json`` and ``metrics.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig
from torch import Tensor, nn
from torch.utils.data import DataLoader

from solo_sqsp.config import ConfigError, omegaconf_select, set_default, uses_cpu
from solo_sqsp.data import (
    active_backend,
    in_order,
    make_classification_dataloaders,
    validate_data_cfg,
)
from solo_sqsp.evaluation.checkpoint import load_frozen_backbone
from solo_sqsp.evaluation.config import evaluation_run_dir, parse_eval_cfg, write_run_files
from solo_sqsp.metrics.knn_classifier import DISTANCES, WeightedKNNClassifier

# solo-learn's scripts/knn/imagenet-100/knn.sh sweep.
DEFAULT_K = (1, 2, 5, 10, 20, 50, 100, 200)
DEFAULT_TEMPERATURES = (0.01, 0.02, 0.05, 0.07, 0.1, 0.2, 0.5, 1.0)
UNUSED_TEMPERATURE = 1.0  # WeightedKNNClassifier wants T > 0 even where it does not use it


@dataclass(frozen=True)
class KnnResult:
    """Accuracy (%) of one k-NN setting; ``temperature`` is None for the euclidean distance."""

    k: int
    distance_function: str
    temperature: float | None
    acc1: float
    acc5: float


def _number_list(cfg: DictConfig, key: str, default: tuple, kind: type) -> list:
    value = set_default(cfg, key, list(default))
    values = list(value) if isinstance(value, (list, tuple, ListConfig)) else [value]
    if not values or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
    ):
        raise ConfigError(f"{key}={value!r}: expected a non-empty list of numbers")
    if any(v <= 0 for v in values):
        raise ConfigError(f"{key}={value!r}: every value must be > 0")
    if kind is int and any(int(v) != v for v in values):
        raise ConfigError(f"{key}={value!r}: expected whole numbers of neighbours")
    return [kind(v) for v in values]


def parse_knn_cfg(cfg: DictConfig) -> DictConfig:
    """Defaults and checks of a k-NN evaluation config, in place."""
    parse_eval_cfg(cfg, "knn")
    batch_size = set_default(cfg, "knn.batch_size", 256)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"knn.batch_size={batch_size!r}: expected a positive integer")
    cfg.knn.k = _number_list(cfg, "knn.k", DEFAULT_K, int)
    cfg.knn.temperature = _number_list(cfg, "knn.temperature", DEFAULT_TEMPERATURES, float)
    distances = set_default(cfg, "knn.distance_function", list(DISTANCES))
    distances = [distances] if isinstance(distances, str) else list(distances)
    unknown = [d for d in distances if d not in DISTANCES]
    if not distances or unknown:
        raise ConfigError(
            f"knn.distance_function={distances!r}: choose one or more of {list(DISTANCES)}"
        )
    cfg.knn.distance_function = distances
    set_default(cfg, "knn.max_distance_matrix_size", int(5e6))
    return cfg


def evaluation_device(cfg: DictConfig) -> torch.device:
    """CPU for ``accelerator: cpu`` (or ``auto`` without CUDA), else the first listed GPU."""
    if uses_cpu(omegaconf_select(cfg, "accelerator")):
        return torch.device("cpu")
    devices = cfg.devices
    index = devices[0] if isinstance(devices, (list, ListConfig)) and devices else 0
    return torch.device("cuda", int(index))


@torch.no_grad()
def extract_features(
    backbone: nn.Module, loader: DataLoader, device: torch.device
) -> tuple[Tensor, Tensor]:
    """``(features (N, D) float32, targets (N,))`` of every batch, backbone in ``eval()``."""
    backbone.eval().to(device)
    features, targets = [], []
    for images, labels in loader:
        features.append(backbone(images.to(device, non_blocking=True)).float())
        targets.append(labels.to(device, non_blocking=True))
    return torch.cat(features), torch.cat(targets)


def knn_sweep(
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    ks: list[int],
    temperatures: list[float],
    distances: list[str],
    max_distance_matrix_size: int = int(5e6),
) -> list[KnnResult]:
    """Weighted k-NN accuracy of ``test`` against ``train`` for every setting, in the order
    k, distance function, temperature (solo-learn's main_knn order)."""
    results = []
    for k in ks:
        for distance in distances:
            for temperature in temperatures if distance == "cosine" else [None]:
                knn = WeightedKNNClassifier(
                    k=k,
                    T=UNUSED_TEMPERATURE if temperature is None else temperature,
                    distance_fx=distance,
                    max_distance_matrix_size=max_distance_matrix_size,
                )
                knn.update(
                    train_features=train[0],
                    train_targets=train[1],
                    test_features=test[0],
                    test_targets=test[1],
                )
                acc1, acc5 = knn.compute()
                results.append(KnnResult(k, distance, temperature, acc1, acc5))
    return results


def format_table(results: list[KnnResult]) -> str:
    """The results as an aligned text table, one setting per row."""
    rows = [("k", "distance", "T", "acc@1", "acc@5")]
    rows += [
        (
            str(r.k),
            r.distance_function,
            "-" if r.temperature is None else f"{r.temperature:g}",
            f"{r.acc1:.2f}",
            f"{r.acc5:.2f}",
        )
        for r in results
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows
    )


def run_knn(cfg: DictConfig) -> dict[str, Any]:
    """Extract features with the frozen pretrained backbone and run the k-NN sweep; return the
    metrics (also written to ``metrics.json``)."""
    cfg = parse_knn_cfg(cfg)
    torch.manual_seed(cfg.seed)
    pretrained = load_frozen_backbone(cfg)
    validate_data_cfg(cfg, "classification")
    pretrained.check_input(cfg)
    train_loader, val_loader = make_classification_dataloaders(
        cfg, cfg.knn.batch_size, crop_size=cfg.data.crop_size, train_augmentation=False
    )
    device = evaluation_device(cfg)
    print(f"k-NN evaluation on {device}; data pipeline: {active_backend()}")
    print(f"backbone: {pretrained.describe()}")

    start = time.time()
    train = extract_features(pretrained.module, in_order(train_loader, cfg.knn.batch_size), device)
    test = extract_features(pretrained.module, in_order(val_loader, cfg.knn.batch_size), device)
    results = knn_sweep(
        train,
        test,
        cfg.knn.k,
        cfg.knn.temperature,
        cfg.knn.distance_function,
        cfg.knn.max_distance_matrix_size,
    )
    best = max(results, key=lambda r: r.acc1)
    metrics: dict[str, Any] = {
        "best": asdict(best),
        "results": [asdict(r) for r in results],
        "num_train": int(train[1].numel()),
        "num_val": int(test[1].numel()),
        "wall_s": round(time.time() - start, 1),
        "backbone": pretrained.spec.name,
        "cifar_stem": pretrained.spec.cifar_stem,
        "checkpoint": str(pretrained.checkpoint),
        "dataset": cfg.data.dataset,
        "crop_size": cfg.data.crop_size,
    }
    run_dir = evaluation_run_dir(cfg, "knn")
    write_run_files(run_dir, cfg, metrics)
    print(format_table(results))
    print(
        f"best: acc@1={best.acc1:.2f} (k={best.k}, {best.distance_function}, T={best.temperature})"
    )
    print(f"run folder: {run_dir}")
    metrics["run_dir"] = str(run_dir)
    return metrics
