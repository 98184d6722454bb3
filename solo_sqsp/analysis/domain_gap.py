"""The domain gap of a student (paper Sec. 5.4, Table 5 right): squared MMD between its backbone
features of synthetic and of real images, beside the same MMD between two disjoint sets of real
images (the estimator's noise floor at that sample size). Feature choices: docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from solo_sqsp.analysis.mmd import Kernel, median_bandwidth, squared_mmd
from solo_sqsp.analysis.samples import analysis_teacher, draw_samples
from solo_sqsp.analysis.student import load_student
from solo_sqsp.config import omegaconf_select

Bandwidth = float | str  # a sigma, or "median"


def measure_domain_gap(
    checkpoint: str | Path,
    teacher: str | Path | None = None,
    num_samples: int = 1000,
    kernel: Kernel = "rbf",
    bandwidth: Bandwidth = "median",
    l2_normalize: bool = False,
    seed: int = 0,
    device: str = "cpu",
    train_path: str | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """``squared_mmd`` (``num_samples`` teacher samples vs as many real training images) and
    ``noise_floor`` (those real images vs ``num_samples`` other ones), with what was measured.

    ``teacher`` defaults to the pretraining run's ``method_kwargs.teacher`` (path, kind, noise
    mode, class sampling); real images are drawn without replacement from the labelled train
    split of the run's dataset with a ``torch.Generator`` seeded with ``seed``, which also seeds
    the teacher's latents.
    """
    if num_samples < 2:
        raise ValueError(f"--num-samples must be at least 2, got {num_samples}")
    if bandwidth != "median" and not (isinstance(bandwidth, float) and bandwidth > 0):
        raise ValueError(f"bandwidth must be 'median' or a number > 0, got {bandwidth!r}")
    student = load_student(checkpoint, device)
    spec = omegaconf_select(student.cfg, "method_kwargs.teacher") or {}
    teacher_path = teacher if teacher is not None else student.teacher_path()
    if teacher_path is None:
        raise ValueError(
            f"{student.backbone.checkpoint}: its pretraining run names no teacher "
            "(method_kwargs.teacher.path); pass --teacher PATH"
        )
    real = student.labelled_split("train", train_path)
    if len(real) < 2 * num_samples:
        raise ValueError(
            f"the {student.cfg.data.dataset} train split holds {len(real)} images, fewer than "
            f"the 2 x {num_samples} the MMD and its noise floor need; lower --num-samples to at "
            f"most {len(real) // 2}"
        )
    generator_teacher = analysis_teacher(
        teacher_path,
        kind=spec.get("kind", "auto") if teacher is None else "auto",
        noise_mode=spec.get("noise_mode", "random"),
        class_sampling=spec.get("class_sampling", "uniform"),
        device=device,
    )
    samples = draw_samples(
        generator_teacher,
        num_samples,
        seed,
        crop_size=student.crop_size,
        normalization=student.normalization,
        batch_size=batch_size,
        grayscale=student.grayscale,
    )
    order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed))
    synthetic_features = student.features(samples.views, batch_size)
    real_features, _ = student.split_features(real, order[:num_samples], batch_size)
    other_features, _ = student.split_features(
        real, order[num_samples : 2 * num_samples], batch_size
    )
    if l2_normalize:
        synthetic_features, real_features, other_features = (
            F.normalize(f, dim=1) for f in (synthetic_features, real_features, other_features)
        )
    sigma = None
    if kernel == "rbf":
        sigma = (
            median_bandwidth(synthetic_features, real_features)
            if bandwidth == "median"
            else bandwidth
        )
    return {
        "squared_mmd": squared_mmd(synthetic_features, real_features, kernel, sigma),
        "noise_floor": squared_mmd(real_features, other_features, kernel, sigma),
        "kernel": kernel,
        "bandwidth": sigma,
        "bandwidth_rule": bandwidth if kernel == "rbf" else None,
        "l2_normalized": l2_normalize,
        "num_samples": num_samples,
        "seed": seed,
        "feature_dim": int(real_features.shape[1]),
        "checkpoint": str(student.backbone.checkpoint),
        "backbone": student.backbone.spec.name,
        "pretrain_method": student.cfg.get("method"),
        "teacher": str(teacher_path),
        "dataset": student.cfg.data.dataset,
        "crop_size": student.crop_size,
    }
