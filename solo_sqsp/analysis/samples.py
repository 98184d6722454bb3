"""Teacher samples for the analyses: the generator's pooled block features, its latent ``w``,
the class it was asked for, and the student's view of each image.

The view is what the student sees in pretraining without the random augmentation
(``solo_sqsp.synthetic.stream``): the image clamped to [-1, 1], mapped to [0, 1], resized (central
square, bilinear) to the student's crop size and normalised with its pretraining statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from solo_sqsp.augment import BatchAugment
from solo_sqsp.data import Normalization
from solo_sqsp.teachers import DEFAULT_FEATURES, MAPPING_FEATURE, GeneratorTeacher
from solo_sqsp.teachers.adapter import select_feature_modules
from solo_sqsp.teachers.loading import load_generator


@dataclass(frozen=True)
class TeacherSamples:
    """``n`` samples on the CPU: ``generator_features`` (the pooled block features concatenated,
    ``(n, sum C_k)``), ``latents`` (``w``, ``(n, w_dim)``; None unless asked for), ``classes``
    (the sampled class of a conditional teacher, -1 for an unconditional one) and ``views``
    (``(n, C, crop, crop)`` normalised student inputs; None without a crop size)."""

    generator_features: Tensor
    latents: Tensor | None
    classes: Tensor
    views: Tensor | None


def sampled_classes(c: Tensor) -> Tensor:
    """The class index of each one-hot row of ``c``; -1 where no class was given (an
    unconditional teacher, ``class_sampling="none"``)."""
    if c.shape[1] == 0:
        return torch.full((len(c),), -1, dtype=torch.long, device=c.device)
    return torch.where(c.sum(dim=1) > 0, c.argmax(dim=1), -1)


def analysis_teacher(
    path: str | Path,
    kind: str = "auto",
    features: str | Sequence[str] = DEFAULT_FEATURES,
    with_latent: bool = False,
    noise_mode: str = "random",
    class_sampling: str | Sequence[int] = "uniform",
    device: torch.device | str = "cpu",
) -> GeneratorTeacher:
    """The teacher at ``path`` with the ``features`` blocks, plus the mapping network (its last
    feature) when ``with_latent``; ``noise_mode``/``class_sampling`` as in pretraining."""
    generator = load_generator(path, kind).to(device)
    names = select_feature_modules(generator, features)
    if with_latent:
        names = [*names, *select_feature_modules(generator, [MAPPING_FEATURE])]
    return GeneratorTeacher(
        generator, features=names, noise_mode=noise_mode, class_sampling=class_sampling
    )


def draw_samples(
    teacher: GeneratorTeacher,
    num_samples: int,
    seed: int,
    crop_size: int | None = None,
    normalization: Normalization | None = None,
    batch_size: int = 256,
    grayscale: bool = False,
) -> TeacherSamples:
    """``num_samples`` teacher samples from one ``torch.Generator`` seeded with ``seed``; the
    latents are the mapping network's output when it is the teacher's last feature (see
    :func:`analysis_teacher`)."""
    if num_samples < 1 or batch_size < 1:
        raise ValueError(
            f"num_samples and batch_size must be >= 1, got {num_samples}, {batch_size}"
        )
    to_view = None
    if crop_size is not None:
        if normalization is None:
            raise ValueError("student views need the normalisation statistics with the crop size")
        to_view = BatchAugment.normalize_only(
            crop_size, normalization.mean, normalization.std, grayscale=grayscale
        )
    with_latent = teacher.feature_names[-1] == MAPPING_FEATURE
    rng = torch.Generator(device=teacher.device).manual_seed(seed)
    features, latents, classes, views = [], [], [], []
    for start in range(0, num_samples, batch_size):
        sample = teacher.sample(min(batch_size, num_samples - start), rng)
        blocks = sample.features[:-1] if with_latent else sample.features
        features.append(torch.cat(blocks, dim=1).cpu())
        if with_latent:
            latents.append(sample.features[-1].cpu())
        classes.append(sampled_classes(sample.c).cpu())
        if to_view is not None:
            images = sample.images.float().clamp(-1.0, 1.0).add(1.0).mul(0.5)
            views.append(to_view(images, rng).cpu())
    return TeacherSamples(
        generator_features=torch.cat(features),
        latents=torch.cat(latents) if with_latent else None,
        classes=torch.cat(classes),
        views=torch.cat(views) if to_view is not None else None,
    )
