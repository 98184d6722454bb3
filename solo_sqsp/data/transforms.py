"""Real-image augmentation pipelines from solo-learn's augmentation yaml schema.

Pretraining: each entry of ``augmentations`` (keys ``rrc``, ``color_jitter``, ``grayscale``,
``gaussian_blur``, ``solarization``, ``equalization``, ``horizontal_flip``, ``crop_size``,
``num_crops``) is one PIL pipeline applied ``num_crops`` times; the views of all entries, in order,
form one item. With the solo-learn backend these are solo-learn's own ``build_transform_pipeline``,
``NCropAugmentation`` and ``FullTransformPipeline``; the built-in pipelines use the same torchvision
operations in the same order with the same random draws, so a seeded image gives the same views.

Evaluation (linear, k-NN): solo-learn's ``prepare_transforms``: random-resized crop (scale 0.08-1)
and flip for training, a plain resize for validation, at a crop size that may be overridden (the
paper's Table 6 evaluates STL10 at 64 px and ImageNet at 96 px). ``data.eval_grayscale: True``
converts every evaluation image to grayscale first, for views that are always grayscale.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from omegaconf import DictConfig, ListConfig
from PIL import Image, ImageFilter
from torch import Tensor
from torchvision import transforms

from solo_sqsp.config import omegaconf_select
from solo_sqsp.data.backend import (
    Backend,
    resolve_backend,
    solo_classification_data,
    solo_pretrain_data,
)
from solo_sqsp.data.datasets import (
    IMAGENET_NORMALIZATION,
    DatasetBuilder,
    Normalization,
    Transform,
    dataset_builder,
)
from solo_sqsp.data.errors import DataConfigError

PROBABILITY_KEYS = (
    "color_jitter.prob",
    "grayscale.prob",
    "gaussian_blur.prob",
    "solarization.prob",
    "equalization.prob",
    "horizontal_flip.prob",
)
COLOR_JITTER_KEYS = ("brightness", "contrast", "saturation", "hue")
EVAL_RESIZE_RATIO = 256 / 224  # ImageNet's resize-then-centre-crop convention


class RandomGaussianBlur:
    """PIL Gaussian blur with radius drawn uniformly from ``sigma`` (SimCLR; solo-learn's blur)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0)) -> None:
        self.sigma = sigma

    def __call__(self, image: Image.Image) -> Image.Image:
        radius = random.uniform(*self.sigma)
        return image.filter(ImageFilter.GaussianBlur(radius=radius))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma})"


class MultiViewTransform:
    """Each ``(pipeline, num_crops)`` applied ``num_crops`` times, in order: one list of views."""

    def __init__(self, pipelines: Sequence[tuple[Transform, int]]) -> None:
        self.pipelines = list(pipelines)

    def __call__(self, image: Image.Image) -> list[Tensor]:
        return [pipeline(image) for pipeline, count in self.pipelines for _ in range(count)]

    def __repr__(self) -> str:
        return "\n".join(f"{count} x [{pipeline}]" for pipeline, count in self.pipelines)


def check_augmentations(augmentations: object) -> None:
    """Raise DataConfigError unless ``augmentations`` is a list of complete pipelines."""
    if not isinstance(augmentations, (ListConfig, list)) or len(augmentations) == 0:
        raise DataConfigError(
            f"augmentations={augmentations!r}: expected a non-empty list of pipelines in "
            "solo-learn's schema. Fix: add e.g. `- augmentations: asymmetric.yaml` to the "
            "config's defaults, as solo-learn's scripts/pretrain/*/ configs do"
        )
    for index, pipeline in enumerate(augmentations):
        where = f"augmentations[{index}]"
        required = ["crop_size", "num_crops", "rrc.enabled", *PROBABILITY_KEYS]
        if omegaconf_select(pipeline, "rrc.enabled"):
            required += ["rrc.crop_min_scale", "rrc.crop_max_scale"]
        if omegaconf_select(pipeline, "color_jitter.prob"):
            required += [f"color_jitter.{key}" for key in COLOR_JITTER_KEYS]
        missing = [key for key in required if omegaconf_select(pipeline, key) is None]
        if missing:
            raise DataConfigError(
                f"{where} lacks {', '.join(missing)}. Expected every key of solo-learn's "
                "augmentation schema (rrc, color_jitter, grayscale, gaussian_blur, solarization, "
                "equalization, horizontal_flip, crop_size, num_crops). Fix: add them (a "
                "probability of 0 disables a step)"
            )
        for key in ("crop_size", "num_crops"):
            value = omegaconf_select(pipeline, key)
            if not isinstance(value, int) or value < 1:
                raise DataConfigError(f"{where}.{key}={value!r}: expected a positive integer")
        for key in PROBABILITY_KEYS:
            value = omegaconf_select(pipeline, key)
            if not 0 <= value <= 1:
                raise DataConfigError(f"{where}.{key}={value!r}: expected a probability in [0, 1]")
        if (
            pipeline.rrc.enabled
            and not 0 < pipeline.rrc.crop_min_scale <= pipeline.rrc.crop_max_scale
        ):
            raise DataConfigError(
                f"{where}.rrc: crop_min_scale={pipeline.rrc.crop_min_scale} and crop_max_scale="
                f"{pipeline.rrc.crop_max_scale}: expected 0 < crop_min_scale <= crop_max_scale"
            )


def pipeline_normalization(builder: DatasetBuilder, pipeline: DictConfig) -> Normalization:
    """The mean/std a pretraining view is normalised with: the dataset's, else the entry's."""
    if builder.pretrain_normalization is not None:
        return builder.pretrain_normalization
    mean = omegaconf_select(pipeline, "mean", IMAGENET_NORMALIZATION.mean)
    std = omegaconf_select(pipeline, "std", IMAGENET_NORMALIZATION.std)
    return Normalization(tuple(mean), tuple(std))


def pretrain_normalization(cfg: DictConfig, pipeline: DictConfig) -> Normalization:
    """The mean/std of ``pipeline``'s real views of ``cfg``'s dataset (synthetic views share it)."""
    return pipeline_normalization(dataset_builder(cfg), pipeline)


def view_pipeline(pipeline: DictConfig, normalization: Normalization) -> transforms.Compose:
    """One augmentation entry as a PIL -> normalised tensor pipeline (solo-learn's order)."""
    steps: list[Callable] = []
    if pipeline.rrc.enabled:
        scale = (pipeline.rrc.crop_min_scale, pipeline.rrc.crop_max_scale)
        steps.append(
            transforms.RandomResizedCrop(
                pipeline.crop_size, scale=scale, interpolation=transforms.InterpolationMode.BICUBIC
            )
        )
    else:
        steps.append(
            transforms.Resize(
                pipeline.crop_size, interpolation=transforms.InterpolationMode.BICUBIC
            )
        )
    jitter = pipeline.color_jitter
    if jitter.prob:
        colour = transforms.ColorJitter(
            jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue
        )
        steps.append(transforms.RandomApply([colour], p=jitter.prob))
    if pipeline.grayscale.prob:
        steps.append(transforms.RandomGrayscale(p=pipeline.grayscale.prob))
    if pipeline.gaussian_blur.prob:
        steps.append(transforms.RandomApply([RandomGaussianBlur()], p=pipeline.gaussian_blur.prob))
    if pipeline.solarization.prob:
        steps.append(transforms.RandomSolarize(threshold=128, p=pipeline.solarization.prob))
    if pipeline.equalization.prob:
        steps.append(transforms.RandomEqualize(p=pipeline.equalization.prob))
    if pipeline.horizontal_flip.prob:
        steps.append(transforms.RandomHorizontalFlip(p=pipeline.horizontal_flip.prob))
    steps += [transforms.ToTensor(), transforms.Normalize(normalization.mean, normalization.std)]
    return transforms.Compose(steps)


def make_pretrain_transform(
    cfg: DictConfig, backend: Backend | None = None
) -> Callable[[Image.Image], list[Tensor]]:
    """PIL image -> list of augmented views, from ``cfg.augmentations`` for ``cfg.data.dataset``.

    Datasets solo-learn does not know (e.g. ``digits``) use the built-in pipelines on both
    backends.
    """
    builder = dataset_builder(cfg)
    augmentations = omegaconf_select(cfg, "augmentations")
    check_augmentations(augmentations)
    if resolve_backend(backend) == "solo-learn" and builder.solo_learn_native:
        solo = solo_pretrain_data()
        return solo.FullTransformPipeline(
            [
                solo.NCropAugmentation(
                    solo.build_transform_pipeline(cfg.data.dataset, pipeline), pipeline.num_crops
                )
                for pipeline in augmentations
            ]
        )
    return MultiViewTransform(
        [
            (
                view_pipeline(pipeline, pipeline_normalization(builder, pipeline)),
                pipeline.num_crops,
            )
            for pipeline in augmentations
        ]
    )


def eval_grayscale(cfg: DictConfig) -> bool:
    """``data.eval_grayscale`` (default False): evaluation reads images in grayscale (three
    equal channels), as pretraining views with ``grayscale.prob: 1`` do."""
    value = omegaconf_select(cfg, "data.eval_grayscale", False)
    if not isinstance(value, bool):
        raise DataConfigError(f"data.eval_grayscale={value!r}: expected True or False")
    return value


def make_classification_transforms(
    cfg: DictConfig, crop_size: int | None = None, backend: Backend | None = None
) -> tuple[Transform, Transform]:
    """``(train, val)`` transforms for linear evaluation of ``cfg.data.dataset``.

    ``crop_size`` overrides the dataset's evaluation size (CIFAR 32, STL10 96, ImageNet 224);
    solo-learn's own pipelines are used at their native size, built-in ones otherwise.
    """
    builder = dataset_builder(cfg)
    size = builder.eval_crop_size if crop_size is None else crop_size
    if not isinstance(size, int) or size < 1:
        raise DataConfigError(f"crop_size={crop_size!r}: expected a positive integer")
    gray = [transforms.Grayscale(num_output_channels=3)] if eval_grayscale(cfg) else []
    native = builder.solo_learn_native and size == builder.eval_crop_size
    if resolve_backend(backend) == "solo-learn" and native:
        solo_train, solo_val = solo_classification_data().prepare_transforms(cfg.data.dataset)
        if not gray:
            return solo_train, solo_val
        return transforms.Compose([*gray, solo_train]), transforms.Compose([*gray, solo_val])
    normalize = [
        transforms.ToTensor(),
        transforms.Normalize(builder.eval_normalization.mean, builder.eval_normalization.std),
    ]
    flip = [transforms.RandomHorizontalFlip()] if builder.eval_train_flip else []
    train = transforms.Compose(
        [
            *gray,
            transforms.RandomResizedCrop(size=size, scale=builder.eval_train_crop_scale),
            *flip,
            *normalize,
        ]
    )
    if builder.eval_resize == "square":
        resize = [transforms.Resize((size, size))]
    else:
        resize = [transforms.Resize(round(size * EVAL_RESIZE_RATIO)), transforms.CenterCrop(size)]
    return train, transforms.Compose([*gray, *resize, *normalize])
