"""``BatchAugment``: solo-learn's augmentation pipeline with parameters drawn per sample.

``mode="per_sample"`` (default) or ``mode="per_batch"`` (the reference code's draw, paper Sec.
3.2); the ops in solo-learn's order, the whole batch on the images' device. A call has three
stages: ``sample_params``, ``plan`` and ``apply``. Rationale and fusions: docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from solo_sqsp.augment.color import apply_color_affine, flat_pixels, grayscale_matrix
from solo_sqsp.augment.config import AugmentSpec, CropSpec, ProbSpec, resolve_mean_std
from solo_sqsp.augment.filters import blur_matrix, blur_radius, equalize, solarize
from solo_sqsp.augment.geometry import (
    INTERPOLATIONS,
    SCRATCH,
    CropGrid,
    can_resample_bilinear,
    center_square_boxes,
    crop_grid,
    crop_matrices,
    resample_bilinear,
    sample_crop_boxes,
    separable_apply,
)
from solo_sqsp.augment.jitter import (
    JitterParams,
    JitterPlan,
    color_jitter_,
    jitter_groups,
    jitter_plan,
    sample_jitter_params,
)
from solo_sqsp.augment.workspace import Workspace

AUGMENT_MODES = ("per_sample", "per_batch")


@dataclass(frozen=True)
class AugmentParams:
    """One call's per-sample random draws (``(N, ...)`` tensors; None: the op is off).
    ``boxes`` are ``(top, left, height, width)`` crop boxes in pixels."""

    boxes: Tensor
    jitter: JitterParams | None
    gray: Tensor | None
    blurred: Tensor | None
    blur_sigma: Tensor | None
    solarized: Tensor | None
    equalized: Tensor | None
    flip: Tensor | None

    def broadcast(self, num: int) -> AugmentParams:
        """The draws of the first sample, repeated for ``num`` samples (``mode="per_batch"``)."""
        first = torch.zeros(num, dtype=torch.long, device=self.boxes.device)
        return _select_rows(self, first)


@dataclass(frozen=True)
class AugmentPlan:
    """What one call does to each sample, as tensors with the batch first: the crop grid
    (None: the images are used as they are), jitter steps, a separate grayscale matrix (only
    when a pixelwise op follows it), blur sigmas and masks, solarize / equalize masks, final
    colour affine. Resampling and blur matrices are built from it per call."""

    crop: CropGrid | None
    jitter: JitterPlan | None
    gray: Tensor | None
    blurred: Tensor | None
    blur_sigma: Tensor | None
    solarized: Tensor | None
    equalized: Tensor | None
    color: Tensor
    shift: Tensor

    def rows(self, index: slice | Tensor) -> AugmentPlan:
        """The plan of the samples ``index`` (a slice, or sample indices) selects."""
        return _select_rows(self, index)


def _select_rows(value: Any, index: slice | Tensor) -> Any:
    if isinstance(value, Tensor):
        return value[index] if isinstance(index, slice) else value.index_select(0, index)
    if dataclasses.is_dataclass(value):
        names = _field_names(type(value))
        return type(value)(*(_select_rows(getattr(value, name), index) for name in names))
    return value


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(kind))


class BatchAugment:
    """Augment a batch ``(N, C, H, W)`` in [0, 1] into ``(N, C, crop, crop)`` normalised views,
    every sample with its own random parameters (``mode="per_sample"``) or every sample of a
    call with the same ones (``mode="per_batch"``, the paper's reference code).

    ``spec``: one solo-learn augmentation entry (``AugmentSpec``; build it from yaml with
    ``from_cfg``). ``mean``/``std``: per-channel normalisation. ``interpolation``: crop
    resampling, ``"bilinear"`` (torchvision's ``RandomResizedCrop`` default, used by the
    paper's code) or ``"bicubic"`` (solo-learn's real-image pipeline); both antialiased like
    torchvision's tensor resize, bicubic output clamped to [0, 1] as PIL's is.

    Call with a ``torch.Generator`` on the images' device (``torch.Generator(device="cuda")``
    for CUDA images): all parameters are drawn from it, so a seed fixes the output. Input
    values are not range-checked (that would synchronise with the device); clamp first.
    The output is float32 and new on every call; batch-sized scratch memory is kept between
    calls (one set per thread).
    """

    def __init__(
        self,
        spec: AugmentSpec,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bilinear",
        mode: str = "per_sample",
    ) -> None:
        if mode not in AUGMENT_MODES:
            raise ValueError(f"augmentation mode must be one of {AUGMENT_MODES}, got {mode!r}")
        if interpolation not in INTERPOLATIONS:
            raise ValueError(
                f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}"
            )
        if len(mean) != len(std):
            raise ValueError(f"mean {tuple(mean)} and std {tuple(std)} differ in length")
        if any(value <= 0 for value in std):
            raise ValueError(f"std values must be positive, got {tuple(std)}")
        self.spec = spec
        self.mean = tuple(float(value) for value in mean)
        self.std = tuple(float(value) for value in std)
        self.interpolation = interpolation
        self.mode = mode
        self._normalizers: dict[torch.device, tuple[Tensor, Tensor]] = {}
        self._workspace = Workspace()

    @classmethod
    def from_cfg(
        cls,
        entry: Mapping[str, Any],
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        interpolation: str = "bilinear",
        mode: str = "per_sample",
    ) -> BatchAugment:
        """From one entry of solo-learn's ``augmentations`` list (dict or ``DictConfig``).
        Normalisation: ``mean``/``std`` if given (the dataset's: pass
        ``solo_sqsp.data.pretrain_normalization(cfg, entry)``), else the entry's, else
        ImageNet's."""
        spec = AugmentSpec.from_mapping(entry)
        chosen_mean, chosen_std = resolve_mean_std(spec, mean, std)
        return cls(spec, chosen_mean, chosen_std, interpolation, mode)

    @classmethod
    def normalize_only(
        cls,
        crop_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        interpolation: str = "bilinear",
        grayscale: bool = False,
    ) -> BatchAugment:
        """No random op: resize (the central square) to ``crop_size``, optionally convert to
        grayscale, and normalise (Table 5, row a: no augmentation of synthetic images)."""
        spec = AugmentSpec(
            crop_size=crop_size,
            rrc=CropSpec(enabled=False),
            grayscale=ProbSpec(prob=1.0 if grayscale else 0.0),
        )
        return cls(spec, mean, std, interpolation)

    @property
    def crop_size(self) -> int:
        return self.spec.crop_size

    @property
    def num_crops(self) -> int:
        return self.spec.num_crops

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.spec}, mean={self.mean}, std={self.std}, "
            f"interpolation={self.interpolation!r}, mode={self.mode!r})"
        )

    def views(self, images: Tensor, rng: torch.Generator) -> list[Tensor]:
        """``num_crops`` independent augmentations of the batch (solo-learn's N crops)."""
        return [self(images, rng) for _ in range(self.num_crops)]

    def __call__(self, images: Tensor, rng: torch.Generator) -> Tensor:
        self._check_inputs(images, rng)
        num, channels, height, width = images.shape
        params = self.sample_params(num, height, width, rng)
        return self.apply(images, self.plan(params, channels, height, width))

    def sample_params(
        self, num: int, height: int, width: int, rng: torch.Generator
    ) -> AugmentParams:
        """Every sample's random draws for images of ``height x width``, on ``rng``'s device:
        ``num`` independent draws, or one broadcast to all ``num`` samples (``per_batch``)."""
        if self.mode == "per_batch":
            return self._draw(1, height, width, rng).broadcast(num)
        return self._draw(num, height, width, rng)

    def _draw(self, num: int, height: int, width: int, rng: torch.Generator) -> AugmentParams:
        """``num`` independent draws of every random parameter."""
        spec = self.spec
        device = rng.device
        if spec.rrc.enabled:
            boxes = sample_crop_boxes(
                num,
                height,
                width,
                (spec.rrc.crop_min_scale, spec.rrc.crop_max_scale),
                (spec.rrc.crop_min_ratio, spec.rrc.crop_max_ratio),
                rng,
                device,
            )
        else:
            boxes = center_square_boxes(num, height, width, device)
        jitter = spec.color_jitter
        jitter_params = None
        if jitter.active:
            strengths = (jitter.brightness, jitter.contrast, jitter.saturation, jitter.hue)
            jitter_params = sample_jitter_params(num, jitter.prob, strengths, rng, device)
        blurred = _coin(num, spec.gaussian_blur.prob, rng, device)
        blur_sigma = None
        if blurred is not None:
            blur = spec.gaussian_blur
            blur_sigma = torch.empty(num, device=device).uniform_(
                blur.sigma_min, blur.sigma_max, generator=rng
            )
        return AugmentParams(
            boxes=boxes,
            jitter=jitter_params,
            gray=_coin(num, spec.grayscale.prob, rng, device),
            blurred=blurred,
            blur_sigma=blur_sigma,
            solarized=_coin(num, spec.solarization.prob, rng, device),
            equalized=_coin(num, spec.equalization.prob, rng, device),
            flip=_coin(num, spec.horizontal_flip.prob, rng, device),
        )

    def plan(self, params: AugmentParams, channels: int, height: int, width: int) -> AugmentPlan:
        """The per-sample matrices that ``params`` mean for ``(channels, height, width)``."""
        num = params.boxes.shape[0]
        device = params.boxes.device
        size = self.crop_size
        jitter = None
        if params.jitter is not None:
            with_hue = self.spec.color_jitter.hue > 0 and channels == 3
            jitter = jitter_plan(params.jitter, with_hue)

        identity = torch.eye(channels, device=device).expand(num, channels, channels)
        color = identity if params.gray is None else grayscale_matrix(params.gray, channels)
        gray = None
        if params.gray is not None and (
            params.solarized is not None or params.equalized is not None
        ):
            gray, color = color, identity

        inverse_std, shift = self._normalizer(device, channels)
        crop = None
        if self.spec.rrc.enabled or params.flip is not None or not height == width == size:
            crop = crop_grid(params.boxes, params.flip, height, width, size)
        return AugmentPlan(
            crop=crop,
            jitter=jitter,
            gray=gray,
            blurred=params.blurred,
            blur_sigma=params.blur_sigma,
            solarized=params.solarized,
            equalized=params.equalized,
            color=inverse_std.view(1, channels, 1) * color,  # diag(1 / std) @ color
            shift=shift.expand(num, channels),
        )

    def apply(self, images: Tensor, plan: AugmentPlan, on_host: bool | None = None) -> Tensor:
        """Run ``plan`` on ``images``. ``on_host`` (default: images on the CPU) sorts the batch
        so that each jitter step touches only the samples that need it
        (``jitter.jitter_groups``, which reads counts back); otherwise nothing is read back
        from the device."""
        images = images.float().contiguous()
        host = images.device.type == "cpu" if on_host is None else on_host
        if not (host and plan.jitter is not None):
            result = self._run(images, plan)
            if result.is_contiguous():
                return self._normalize(result, plan, out=torch.empty_like(result))
            return self._normalize(result, plan, out=self._scratch_like(result)).contiguous()
        order, group_ends = jitter_groups(plan.jitter)
        result = self._run(images, plan.rows(order), order, group_ends)
        # `result` is this call's own memory (never the caller's tensor or a workspace
        # buffer): the samples go back to input order, row-major, in the crop's scratch buffer
        # (free again, so no extra memory is touched), and the output is normalised into
        # `result`'s memory (no fresh allocation)
        staged = self._workspace.take(SCRATCH, result.shape, result.device)
        torch.index_select(result, 0, order.argsort(), out=staged)
        return self._normalize(staged, plan, out=_dense_view(result))

    def _scratch_like(self, images: Tensor) -> Tensor:
        """A workspace buffer with the shape and memory layout (row- or column-major) of
        ``images``."""
        num, channels, height, width = images.shape
        if images.is_contiguous():
            return self._workspace.take("normalized", images.shape, images.device)
        swapped = self._workspace.take("normalized", (num, channels, width, height), images.device)
        return swapped.transpose(2, 3)

    def _run(
        self,
        images: Tensor,
        plan: AugmentPlan,
        order: Tensor | None = None,
        group_ends: list[int] | None = None,
    ) -> Tensor:
        """Everything up to the normalisation, on images in [0, 1], sample ``n`` of the
        result made from ``images[order[n]]`` (default ``n``). The result is ``images`` itself
        (no ``order`` and nothing to do) or memory of this call's own, never a workspace
        buffer (``apply`` may write the output into it), stored row- or column-major
        (``color.flat_pixels``); ``images`` are never written."""
        size = self.crop_size
        _, _, height, width = images.shape
        if plan.crop is not None and (
            self.interpolation == "bilinear" and can_resample_bilinear(height, width, size)
        ):
            images = resample_bilinear(images, plan.crop, self._workspace, source=order)
        else:
            if order is not None:
                images = images.index_select(0, order)
            if plan.crop is not None:
                images = separable_apply(images, *crop_matrices(plan.crop, self.interpolation))
                if self.interpolation == "bicubic":
                    images = images.clamp_(0.0, 1.0)
            elif order is None and plan.jitter is not None:
                images = images.clone(memory_format=torch.contiguous_format)
        if plan.jitter is not None:
            images = color_jitter_(images, plan.jitter, group_ends, self._workspace)
        if plan.gray is not None:
            images = apply_color_affine(images, plan.gray)
        if plan.blurred is not None and plan.blur_sigma is not None:
            radius = blur_radius(self.spec.gaussian_blur.sigma_max, size)
            blur = blur_matrix(plan.blur_sigma, plan.blurred, size, radius)
            images = separable_apply(images, blur, blur)
        if plan.solarized is not None:
            images = solarize(images, plan.solarized)
        if plan.equalized is not None:
            images = equalize(images, plan.equalized)
        return images

    @staticmethod
    def _normalize(images: Tensor, plan: AugmentPlan, out: Tensor | None = None) -> Tensor:
        """The final per-sample colour affine: grayscale (when fused) and normalisation."""
        return apply_color_affine(images, plan.color, plan.shift, out=out)

    def _normalizer(self, device: torch.device, channels: int) -> tuple[Tensor, Tensor]:
        """``1 / std`` and ``-mean / std``, made once per device (no per-call copy)."""
        if len(self.mean) != channels:
            raise ValueError(
                f"images have {channels} channels but mean/std have {len(self.mean)} values; "
                "pass per-channel mean and std"
            )
        if device not in self._normalizers:
            mean = torch.tensor(self.mean, device=device)
            std = torch.tensor(self.std, device=device)
            self._normalizers[device] = (1.0 / std, -mean / std)
        return self._normalizers[device]

    def _check_inputs(self, images: Tensor, rng: torch.Generator) -> None:
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(
                f"images must be (N, C, H, W) with C = 1 or 3, got shape {tuple(images.shape)}"
            )
        if not images.is_floating_point():
            raise ValueError(
                f"images must be floating point in [0, 1], got {images.dtype}; convert uint8 "
                "images with images.float() / 255"
            )
        if rng.device.type != images.device.type:
            raise ValueError(
                f"rng is on {rng.device} but images are on {images.device}; use "
                "torch.Generator(device=images.device)"
            )


def _dense_view(images: Tensor) -> Tensor:
    """A contiguous tensor of the shape of row- or column-major ``images`` over their memory
    (``color.flat_pixels``' layouts)."""
    if images.is_contiguous():
        return images
    return flat_pixels(images).view(images.shape)


def _coin(num: int, prob: float, rng: torch.Generator, device: torch.device) -> Tensor | None:
    """``(N,)`` bool, True with probability ``prob``; None (and no draw) when ``prob`` is 0."""
    if prob <= 0:
        return None
    return torch.rand(num, generator=rng, device=device) < prob
