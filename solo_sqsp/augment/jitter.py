"""torchvision's ``RandomApply([ColorJitter(b, c, s, h)], p)`` with every sample drawing its own
factors and its own order of the four ops.

Brightness ``clamp(f x)``, contrast ``clamp(f x + (1 - f) mean(gray(x)))`` and saturation
``clamp(f x + (1 - f) gray(x))`` are one "blend step" ``clamp(f x + a gray(x) + b mean(gray(x)))``
with per-sample coefficients, so a batched step runs any of them per sample. Each sample runs
its three blend ops as steps 0, 1, 2 and its hue rotation after ``before_hue`` of them. Two ways
to run a batch, with the same result:

- masked (any device, never synchronises): three "pre" steps where samples whose hue comes
  later blend and the others idle (factor 1), one hue pass over the batch, three "post" steps;
- grouped (CPU, where reading counts back is free): the batch sorted by when each sample's hue
  comes (``jitter_groups``), so every step and the hue pass touch only the contiguous run of
  samples that need them, and samples without jitter are skipped; half the blend work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from solo_sqsp.augment.color import SHARED_PLANE, adjust_hue, flat_pixels, gray_weights
from solo_sqsp.augment.workspace import Workspace

BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)
"""torchvision's ``ColorJitter`` op ids (``fn_idx``); permuted per sample here."""
_BLEND_OPS = 3


@dataclass(frozen=True)
class JitterParams:
    """Per-sample ``ColorJitter`` draws: factors ``(N,)`` (1, or hue 0, where jitter is not
    applied), ``order`` ``(N, 4)``: each sample's permutation of the op ids, and ``applied``."""

    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    order: Tensor
    applied: Tensor


def sample_jitter_params(
    num: int,
    prob: float,
    strengths: tuple[float, float, float, float],
    rng: torch.Generator,
    device: torch.device,
) -> JitterParams:
    """``RandomApply([ColorJitter(b, c, s, h)], p=prob)`` per sample: factors ``~ U[max(0, 1 -
    b), 1 + b]`` (hue ``~ U[-h, h]``) and a uniformly random order of the four ops."""
    draws = torch.rand(num, 5, generator=rng, device=device)
    applied = draws[:, 4] < prob
    lows, spans, neutrals = _factor_ranges(tuple(strengths), device)
    factors = torch.where(applied.unsqueeze(1), torch.addcmul(lows, spans, draws[:, :4]), neutrals)
    order = torch.rand(num, 4, generator=rng, device=device).argsort(dim=1)
    return JitterParams(*factors.unbind(1), order=order, applied=applied)


@functools.cache
def _factor_ranges(
    strengths: tuple[float, float, float, float], device: torch.device
) -> tuple[Tensor, Tensor, Tensor]:
    """``(4,)`` lowest factors, widths of their ranges and neutral factors of the four ops
    (made once per device, so a call never copies from the host)."""
    ranges = [
        (-strength, strength) if op == HUE else (max(0.0, 1 - strength), 1 + strength)
        for op, strength in enumerate(strengths)
    ]
    neutrals = [0.0 if op == HUE else 1.0 for op in range(len(strengths))]
    return (
        torch.tensor([low for low, _ in ranges], device=device),
        torch.tensor([high - low for low, high in ranges], device=device),
        torch.tensor(neutrals, device=device),
    )


@dataclass(frozen=True)
class JitterPlan:
    """Each sample's blend ops in running order, ``(N, 3)`` coefficients of the blend step
    (``scale``: ``f``; ``to_gray``, ``to_mean``: ``1 - f`` for saturation / contrast, else 0),
    its hue shift ``(N,)`` and how many blend ops run before it (``None``: no hue op)."""

    scale: Tensor
    to_gray: Tensor
    to_mean: Tensor
    hue: Tensor | None
    before_hue: Tensor | None
    applied: Tensor


def jitter_plan(params: JitterParams, with_hue: bool) -> JitterPlan:
    """The blend coefficients that replay ``params``. ``with_hue`` False: no hue op at all
    (hue strength 0: torchvision's hue op is ``None``), so no HSV pass."""
    position = params.order.argsort(dim=1)  # position[n, op]: when op runs for sample n
    blend_order = position[:, :_BLEND_OPS].argsort(dim=1)  # blend ops, in running order
    factors = torch.stack([params.brightness, params.contrast, params.saturation], dim=1)
    scale = factors.gather(1, blend_order)
    return JitterPlan(
        scale=scale,
        to_gray=torch.where(blend_order == SATURATION, 1.0 - scale, 0.0),
        to_mean=torch.where(blend_order == CONTRAST, 1.0 - scale, 0.0),
        hue=params.hue if with_hue else None,
        before_hue=position[:, HUE] if with_hue else None,
        applied=params.applied,
    )


def jitter_groups(plan: JitterPlan) -> tuple[Tensor, list[int]]:
    """For the grouped way (CPU only: it reads counts back): the sample order that sorts the
    batch into groups (3, 2, 1, 0 blend ops before hue, then no jitter) and the groups' ends."""
    before_hue = plan.before_hue
    if plan.hue is None or before_hue is None:
        before_hue = torch.zeros_like(plan.applied, dtype=torch.long)
    key = torch.where(plan.applied, _BLEND_OPS - before_hue, _BLEND_OPS + 1)
    ends = key.bincount(minlength=_BLEND_OPS + 2).cumsum(0).tolist()
    return key.argsort(stable=True), ends


def color_jitter(images: Tensor, plan: JitterPlan, group_ends: list[int] | None = None) -> Tensor:
    """Run ``plan`` on ``(N, C, H, W)`` images in [0, 1], returning new images: the masked way,
    or with ``group_ends`` the grouped way (images and plan already in ``jitter_groups`` order;
    ``group_ends`` counted from this batch's first sample, clipped to its size)."""
    return color_jitter_(
        images.clone(memory_format=torch.contiguous_format), plan, group_ends, Workspace()
    )


def color_jitter_(
    images: Tensor, plan: JitterPlan, group_ends: list[int] | None, workspace: Workspace
) -> Tensor:
    """``color_jitter`` in place on row- or column-major ``images`` (``color.flat_pixels``),
    temporaries in ``workspace``."""
    if group_ends is None:
        _masked_jitter_(images, plan, workspace)
    else:
        _grouped_jitter_(images, plan, group_ends, workspace)
    return images


class _BlendStep(NamedTuple):
    """Step ``s``'s per-sample coefficients for batched matmuls: ``scale`` ``(N, 1, 1)``
    (``f``), ``gray_row`` and ``mean_row`` ``(N, 1, C)``, which give the gray term
    ``to_gray w . x`` and the contrast term ``to_mean w . mean(x)`` (``w``: gray weights)."""

    scale: Tensor
    gray_row: Tensor
    mean_row: Tensor

    def rows(self, start: int, stop: int) -> _BlendStep:
        return _BlendStep(*(part[start:stop] for part in self))


def _blend_steps(plan: JitterPlan, channels: int) -> list[_BlendStep]:
    """The three steps' coefficients, each a view of one tensor per kind (made in 11 ops)."""
    num = plan.scale.shape[0]
    weights = gray_weights(channels, plan.scale.device)

    def by_step(coefficients: Tensor) -> Tensor:
        return coefficients.t().view(_BLEND_OPS, num, 1, 1)

    return [
        _BlendStep(*parts)
        for parts in zip(
            by_step(plan.scale).unbind(0),
            (by_step(plan.to_gray) * weights).unbind(0),
            (by_step(plan.to_mean) * weights).unbind(0),
            strict=True,
        )
    ]


def _blend_(flat: Tensor, step: _BlendStep, workspace: Workspace, with_mean: bool = True) -> None:
    """One blend step in place on ``(N, C, H * W)`` pixels (``color.flat_pixels``):
    ``clamp(f x + a gray(x) + b mean(gray(x)))`` with ``step``'s per-sample coefficients;
    ``with_mean`` False skips the mean (no sample runs contrast in this step)."""
    # the hue step's shared plane (hue runs between blend steps, never inside one)
    target = workspace.take(SHARED_PLANE, (flat.shape[0], 1, flat.shape[2]), flat.device)
    if with_mean:
        offset = torch.bmm(step.mean_row, flat.mean(dim=2, keepdim=True))
        torch.baddbmm(offset, step.gray_row, flat, out=target)
    else:
        torch.bmm(step.gray_row, flat, out=target)
    torch.addcmul(target, flat, step.scale, out=flat).clamp_(0.0, 1.0)


def _masked_jitter_(images: Tensor, plan: JitterPlan, workspace: Workspace) -> None:
    flat = flat_pixels(images)
    steps = _blend_steps(plan, images.shape[1])
    if plan.hue is None or plan.before_hue is None:
        for step in steps:
            _blend_(flat, step, workspace)
        return
    step_ids = torch.arange(_BLEND_OPS, device=images.device)
    before = step_ids < plan.before_hue.unsqueeze(1)  # (N, 3): blend op runs before the hue op
    for active in (before, ~before):
        runs = active[..., None, None]
        for index, step in enumerate(steps):
            running = runs[:, index]
            masked = _BlendStep(
                step.scale.masked_fill(~running, 1.0),
                step.gray_row * running,
                step.mean_row * running,
            )
            _blend_(flat, masked, workspace)
        if active is before:
            adjust_hue(images, plan.hue, out=images, workspace=workspace)


def _grouped_jitter_(
    images: Tensor, plan: JitterPlan, ends: list[int], workspace: Workspace
) -> None:
    jittered = ends[_BLEND_OPS]
    flat = flat_pixels(images)
    steps = _blend_steps(plan, images.shape[1])
    with_mean = (plan.to_mean != 0).cumsum(0).tolist()  # contrast counts, per step

    def blend_rows(step: int, start: int, stop: int) -> None:
        if start < stop:
            contrast = with_mean[stop - 1][step] - (with_mean[start - 1][step] if start else 0)
            _blend_(
                flat[start:stop], steps[step].rows(start, stop), workspace, with_mean=contrast > 0
            )

    if plan.hue is None:
        for step in range(_BLEND_OPS):
            blend_rows(step, 0, jittered)
        return
    # blend op `step` runs before hue for the first 3 - step groups, after it for the rest
    for step in range(_BLEND_OPS):
        blend_rows(step, 0, ends[_BLEND_OPS - 1 - step])
    hued = images[:jittered]
    adjust_hue(hued, plan.hue[:jittered], out=hued, workspace=workspace)
    for step in range(_BLEND_OPS):
        blend_rows(step, ends[_BLEND_OPS - 1 - step], jittered)
