"""Checks on the built method before the run folder exists and before any training step.

What config and file checks cannot see until the teacher is loaded: whether its images fit the
student's views (``STUDENT_CHANNELS`` channels, at least ``augmentations[0].crop_size`` pixels),
and whether its features are finite on a couple of samples drawn the way the first synthetic
batch is. Each failure is one exception whose message says what was found, what was expected,
and the fix.
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from solo_sqsp.config import ConfigError, omegaconf_select
from solo_sqsp.synthetic.stream import stream_seed
from solo_sqsp.training.nonfinite import NonFiniteError

STUDENT_CHANNELS = 3  # the ResNet students read RGB views
PROBE_SAMPLES = 2


def check_teacher_fits_views(
    teacher: Any, crop_size: int, teacher_path: str, allow_upsampling: bool = False
) -> None:
    """Raise ConfigError unless the teacher draws RGB images of at least ``crop_size`` pixels
    (a smaller generator's images would be upsampled into the student's views; set
    ``method_kwargs.teacher.allow_upsampling=True`` to accept that)."""
    if teacher.img_channels != STUDENT_CHANNELS:
        raise ConfigError(
            f"teacher {teacher_path} draws {teacher.img_channels}-channel images but the student "
            f"reads {STUDENT_CHANNELS}-channel (RGB) views; use an RGB generator"
        )
    if teacher.resolution < crop_size and not allow_upsampling:
        raise ConfigError(
            f"teacher {teacher_path} draws {teacher.resolution}x{teacher.resolution} images but "
            f"augmentations[0].crop_size is {crop_size}: expected a teacher of at least "
            f"{crop_size} px. Use a teacher trained at that resolution, lower crop_size to "
            f"{teacher.resolution}, or set method_kwargs.teacher.allow_upsampling=True"
        )


@torch.no_grad()
def check_teacher_finite(teacher: Any, seed: int, teacher_path: str) -> None:
    """Draw ``PROBE_SAMPLES`` samples from the seed of the first synthetic batch (rank 0, step 0)
    and raise NonFiniteError naming the feature modules (or images) that hold NaN/inf.
    The global RNG streams are left untouched."""
    device = teacher.device
    devices = [] if device.type == "cpu" else [device]
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        rng = torch.Generator(device=device).manual_seed(stream_seed(seed, 0, 0, 0))
        sample = teacher.sample(PROBE_SAMPLES, rng)
    outputs = {
        "images": sample.images,
        **dict(zip(teacher.feature_names, sample.features, strict=True)),
    }
    bad = [
        f"{name} ({int((~torch.isfinite(value)).sum())} of {value.numel()} values)"
        for name, value in outputs.items()
        if not bool(torch.isfinite(value).all())
    ]
    if bad:
        raise NonFiniteError(
            f"teacher {teacher_path} gives NaN/inf on its first samples in {', '.join(bad)}; "
            "the generator weights are corrupt or overflow: re-download or re-train the teacher "
            "file"
        )


def check_method(model: Any, cfg: DictConfig) -> None:
    """Every preflight check that applies to ``model`` (methods without a teacher: none)."""
    teacher = model.__dict__.get("teacher")
    if teacher is None:
        return
    path = str(omegaconf_select(cfg, "method_kwargs.teacher.path"))
    check_teacher_fits_views(
        teacher,
        int(cfg.augmentations[0].crop_size),
        path,
        allow_upsampling=bool(
            omegaconf_select(cfg, "method_kwargs.teacher.allow_upsampling", False)
        ),
    )
    check_teacher_finite(teacher, int(omegaconf_select(cfg, "method_kwargs.seed", 0)), path)
