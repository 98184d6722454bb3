"""One augmentation pipeline as written in solo-learn's yaml (``cfg.augmentations[i]``).

The keys, their meaning and their order of application are those of solo-learn's
``build_transform_pipeline`` (``solo/data/pretrain_dataloader.py``)::

    crop_size: int                      # output side (CIFAR 32, STL10 64, ImageNet 96)
    num_crops: int                      # views drawn from this pipeline
    rrc: {enabled, crop_min_scale, crop_max_scale}
    color_jitter: {prob, brightness, contrast, saturation, hue}
    grayscale: {prob}
    gaussian_blur: {prob}
    solarization: {prob}
    equalization: {prob}
    horizontal_flip: {prob}
    mean: [r, g, b]                     # optional, as in solo-learn
    std: [r, g, b]                      # optional, as in solo-learn

Extensions (optional, with solo-learn's and torchvision's values as defaults):
``rrc.crop_min_ratio`` / ``rrc.crop_max_ratio`` (torchvision's aspect-ratio range 3/4..4/3)
and ``gaussian_blur.sigma_min`` / ``gaussian_blur.sigma_max`` (solo-learn's 0.1..2.0).
``crop_size`` is required; every other key may be left out: a missing op is off (prob 0),
a missing ``rrc`` is torchvision's ``RandomResizedCrop`` default (scale 0.08..1).
Unknown keys raise ``AugmentConfigError`` listing the allowed ones.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class AugmentConfigError(ValueError):
    """An augmentation entry with an unknown key or a value out of range."""


def _check_probability(where: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise AugmentConfigError(f"{where} must be a probability in [0, 1], got {value}")


def _check_range(where: str, low: float, high: float, minimum: float = 0.0) -> None:
    if not minimum < low <= high:
        raise AugmentConfigError(
            f"{where} must satisfy {minimum} < min <= max, got min={low}, max={high}"
        )


@dataclass(frozen=True)
class CropSpec:
    """``rrc``: torchvision ``RandomResizedCrop(scale, ratio)``; disabled: resize only."""

    enabled: bool = True
    crop_min_scale: float = 0.08
    crop_max_scale: float = 1.0
    crop_min_ratio: float = 3.0 / 4.0
    crop_max_ratio: float = 4.0 / 3.0

    def __post_init__(self) -> None:
        _check_range("rrc.crop_min_scale/crop_max_scale", self.crop_min_scale, self.crop_max_scale)
        _check_range("rrc.crop_min_ratio/crop_max_ratio", self.crop_min_ratio, self.crop_max_ratio)


@dataclass(frozen=True)
class ColorJitterSpec:
    """``color_jitter``: ``RandomApply([ColorJitter(b, c, s, h)], p=prob)``."""

    prob: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0

    def __post_init__(self) -> None:
        _check_probability("color_jitter.prob", self.prob)
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise AugmentConfigError(
                    f"color_jitter.{name} must be >= 0, got {getattr(self, name)}"
                )
        if not 0.0 <= self.hue <= 0.5:
            raise AugmentConfigError(f"color_jitter.hue must be in [0, 0.5], got {self.hue}")

    @property
    def active(self) -> bool:
        strengths = (self.brightness, self.contrast, self.saturation, self.hue)
        return self.prob > 0 and any(strength > 0 for strength in strengths)


@dataclass(frozen=True)
class ProbSpec:
    """An op applied with probability ``prob`` (grayscale, solarization, ...)."""

    prob: float = 0.0


@dataclass(frozen=True)
class BlurSpec:
    """``gaussian_blur``: solo-learn's ``GaussianBlur(sigma ~ U[sigma_min, sigma_max])``."""

    prob: float = 0.0
    sigma_min: float = 0.1
    sigma_max: float = 2.0

    def __post_init__(self) -> None:
        _check_probability("gaussian_blur.prob", self.prob)
        _check_range("gaussian_blur.sigma_min/sigma_max", self.sigma_min, self.sigma_max)


@dataclass(frozen=True)
class AugmentSpec:
    """One validated solo-learn augmentation entry (see the module docstring)."""

    crop_size: int
    num_crops: int = 1
    rrc: CropSpec = field(default_factory=CropSpec)
    color_jitter: ColorJitterSpec = field(default_factory=ColorJitterSpec)
    grayscale: ProbSpec = field(default_factory=ProbSpec)
    gaussian_blur: BlurSpec = field(default_factory=BlurSpec)
    solarization: ProbSpec = field(default_factory=ProbSpec)
    equalization: ProbSpec = field(default_factory=ProbSpec)
    horizontal_flip: ProbSpec = field(default_factory=ProbSpec)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.crop_size < 1:
            raise AugmentConfigError(f"crop_size must be a positive int, got {self.crop_size}")
        if self.num_crops < 1:
            raise AugmentConfigError(f"num_crops must be a positive int, got {self.num_crops}")
        for name in ("grayscale", "solarization", "equalization", "horizontal_flip"):
            _check_probability(f"{name}.prob", getattr(self, name).prob)

    @classmethod
    def from_mapping(cls, entry: Mapping[str, Any]) -> AugmentSpec:
        """Validate one yaml entry (a dict or an OmegaConf ``DictConfig``)."""
        return _build(cls, entry, where="augmentation entry")


def resolve_mean_std(
    spec: AugmentSpec,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Normalisation statistics: explicit ``mean``/``std`` arguments (a dataset's, e.g. from
    ``solo_sqsp.data.pretrain_normalization``), else the entry's own ``mean``/``std``, else
    ImageNet's."""
    default_mean, default_std = IMAGENET_MEAN_STD
    chosen_mean = tuple(float(v) for v in (mean or spec.mean or default_mean))
    chosen_std = tuple(float(v) for v in (std or spec.std or default_std))
    if len(chosen_mean) != len(chosen_std):
        raise AugmentConfigError(
            f"mean {chosen_mean} and std {chosen_std} must have one value per channel each"
        )
    if any(value <= 0 for value in chosen_std):
        raise AugmentConfigError(f"std values must be positive, got {chosen_std}")
    return chosen_mean, chosen_std


def _build(spec_type: type, entry: Mapping[str, Any], where: str) -> Any:
    if not isinstance(entry, Mapping):
        raise AugmentConfigError(f"{where} must be a mapping, got {type(entry).__name__}")
    fields = {f.name: f for f in dataclasses.fields(spec_type)}
    unknown = sorted(str(key) for key in entry if key not in fields)
    if unknown:
        raise AugmentConfigError(
            f"unknown key(s) {unknown} in {where}; allowed keys: {sorted(fields)}"
        )
    required = [
        name
        for name, f in fields.items()
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in entry]
    if missing:
        raise AugmentConfigError(f"{where} is missing required key(s) {missing}")
    values = {
        name: _convert(fields[name].type, value, f"{where}: {name}")
        for name, value in entry.items()
    }
    return spec_type(**values)


def _convert(type_name: str, value: Any, where: str) -> Any:
    """A yaml value as the field type named ``type_name`` (annotations are strings here)."""
    if type_name in _NESTED_SPECS:
        return _build(_NESTED_SPECS[type_name], value, where)
    if type_name == "tuple[float, ...] | None":
        if value is None:
            return None
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise AugmentConfigError(f"{where} must be a list of numbers, got {value!r}")
        return tuple(_number(item, where) for item in value)
    if type_name == "bool":
        if not isinstance(value, bool):
            raise AugmentConfigError(f"{where} must be true or false, got {value!r}")
        return value
    number = _number(value, where)
    if type_name == "int":
        if int(number) != number:
            raise AugmentConfigError(f"{where} must be an integer, got {value!r}")
        return int(number)
    return number


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise AugmentConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


_NESTED_SPECS = {
    "CropSpec": CropSpec,
    "ColorJitterSpec": ColorJitterSpec,
    "ProbSpec": ProbSpec,
    "BlurSpec": BlurSpec,
}
