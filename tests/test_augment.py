"""Batched per-sample augmentation (solo_sqsp.augment) against torchvision's per-image ops.

Three kinds of checks: exact equality with torchvision v2's functional ops replaying the same
per-sample draws; distribution checks (two-sample Kolmogorov-Smirnov with fixed seeds) of the
draws against torchvision v2's own random transforms; and the config schema of solo-learn.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as tvf

from solo_sqsp.augment import AugmentConfigError, AugmentSpec, BatchAugment
from solo_sqsp.augment.color import GRAY_WEIGHTS, adjust_hue
from solo_sqsp.augment.filters import blur_radius
from solo_sqsp.augment.geometry import (
    crop_grid,
    crop_matrices,
    sample_crop_boxes,
    separable_apply,
)
from solo_sqsp.augment.jitter import (
    BRIGHTNESS,
    JitterParams,
    color_jitter,
    jitter_groups,
    jitter_plan,
)
from solo_sqsp.augment.pipeline import AugmentParams

CPU = torch.device("cpu")
KS_SAMPLES = 1000
CIFAR10_MEAN_STD = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
STL10_MEAN_STD = ((0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261))


def entry(crop_size: int = 16, **ops: dict) -> dict:
    """A solo-learn augmentation entry with every op off except those given."""
    base = {
        "rrc": {"enabled": False, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
        "color_jitter": {"prob": 0.0, "brightness": 0, "contrast": 0, "saturation": 0, "hue": 0},
        "grayscale": {"prob": 0.0},
        "gaussian_blur": {"prob": 0.0},
        "solarization": {"prob": 0.0},
        "equalization": {"prob": 0.0},
        "horizontal_flip": {"prob": 0.0},
        "crop_size": crop_size,
        "num_crops": 1,
    }
    base.update(ops)
    return base


FULL = entry(
    crop_size=24,
    rrc={"enabled": True, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
    color_jitter={"prob": 0.8, "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": 0.2},
    grayscale={"prob": 0.3},
    gaussian_blur={"prob": 0.5},
    solarization={"prob": 0.3},
    horizontal_flip={"prob": 0.5},
)


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def replay_with_torchvision(aug: BatchAugment, images: torch.Tensor, params: AugmentParams):
    """solo-learn's per-image pipeline in torchvision v2 functional ops, using our draws."""
    spec = aug.spec
    mode = tvf.InterpolationMode.BILINEAR
    if aug.interpolation == "bicubic":
        mode = tvf.InterpolationMode.BICUBIC
    jitter_ops = [tvf.adjust_brightness, tvf.adjust_contrast, tvf.adjust_saturation, tvf.adjust_hue]
    strengths = [
        spec.color_jitter.brightness,
        spec.color_jitter.contrast,
        spec.color_jitter.saturation,
        spec.color_jitter.hue,
    ]
    outputs = []
    for i, image in enumerate(images):
        top, left, height, width = (int(v) for v in params.boxes[i])
        size = [aug.crop_size, aug.crop_size]
        out = tvf.resized_crop(image, top, left, height, width, size, mode, antialias=True)
        if aug.interpolation == "bicubic":
            out = out.clamp(0, 1)
        if params.jitter is not None:
            j = params.jitter
            factors = [j.brightness[i], j.contrast[i], j.saturation[i], j.hue[i]]
            for op in j.order[i].tolist():
                if strengths[op] > 0:
                    out = jitter_ops[op](out, float(factors[op]))
        if params.gray is not None and params.gray[i]:
            out = tvf.rgb_to_grayscale(out, num_output_channels=3)
        if params.blurred is not None and params.blurred[i]:
            side = 2 * blur_radius(spec.gaussian_blur.sigma_max, aug.crop_size) + 1
            sigma = float(params.blur_sigma[i])
            out = tvf.gaussian_blur(out, [side, side], [sigma, sigma])
        if params.solarized is not None and params.solarized[i]:
            out = tvf.solarize(out, 0.5)
        if params.equalized is not None and params.equalized[i]:
            out = tvf.equalize(out)
        if params.flip is not None and params.flip[i]:
            out = tvf.horizontal_flip(out)
        outputs.append(tvf.normalize(out, list(aug.mean), list(aug.std)))
    return torch.stack(outputs)


def run_params(aug: BatchAugment, images: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    _, channels, height, width = images.shape
    return aug.apply(images, aug.plan(params, channels, height, width))


# ----------------------------------------------------------------- exact per-image equality


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@pytest.mark.parametrize("input_size", [(40, 40), (20, 28)])
def test_whole_pipeline_equals_torchvision_per_image(interpolation, input_size):
    mean, std = CIFAR10_MEAN_STD
    aug = BatchAugment.from_cfg(FULL, mean=mean, std=std, interpolation=interpolation)
    images = torch.rand(48, 3, *input_size, generator=generator(0))
    params = aug.sample_params(48, *input_size, generator(1))
    ours = run_params(aug, images, params)
    reference = replay_with_torchvision(aug, images, params)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=0)


def test_equalization_matches_torchvision_where_drawn():
    aug = BatchAugment.from_cfg(entry(crop_size=16, equalization={"prob": 0.5}))
    images = torch.rand(32, 3, 16, 16, generator=generator(2))
    params = aug.sample_params(32, 16, 16, generator(3))
    assert 0 < int(params.equalized.sum()) < 32
    ours = run_params(aug, images, params)
    torch.testing.assert_close(ours, replay_with_torchvision(aug, images, params))


def test_resized_crop_matches_torchvision_when_shrinking():
    images = torch.rand(16, 3, 64, 48, generator=generator(4))
    boxes = sample_crop_boxes(16, 64, 48, (0.5, 1.0), (0.75, 4 / 3), generator(5), CPU)
    rows, cols = crop_matrices(crop_grid(boxes, None, 64, 48, 20))
    ours = separable_apply(images, rows, cols)
    reference = torch.stack(
        [
            tvf.resized_crop(image, *(int(v) for v in box), [20, 20], antialias=True)
            for image, box in zip(images, boxes, strict=True)
        ]
    )
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=0)


def test_full_scale_square_crop_equals_resize():
    spec = entry(crop_size=24, rrc={"enabled": True, "crop_min_scale": 1.0, "crop_max_scale": 1.0})
    spec["rrc"].update(crop_min_ratio=1.0, crop_max_ratio=1.0)
    aug = BatchAugment.from_cfg(spec, mean=(0, 0, 0), std=(1, 1, 1))
    images = torch.rand(4, 3, 40, 40, generator=generator(6))
    expected = tvf.resize(images, [24, 24], antialias=True)
    torch.testing.assert_close(aug(images, generator(7)), expected, atol=1e-5, rtol=0)


def test_flip_is_exact_mirror():
    aug = BatchAugment.from_cfg(
        entry(crop_size=16, horizontal_flip={"prob": 1.0}), mean=(0, 0, 0), std=(1, 1, 1)
    )
    images = torch.rand(3, 3, 16, 16, generator=generator(8))
    assert torch.equal(aug(images, generator(9)), images.flip(-1))


def run_jitter(images: torch.Tensor, plan, grouped: bool) -> torch.Tensor:
    """The masked way, or the grouped way: sort into groups, run, restore the order."""
    if not grouped:
        return color_jitter(images, plan)
    order, ends = jitter_groups(plan)
    sorted_plan = type(plan)(**{k: _take(v, order) for k, v in vars(plan).items()})
    result = color_jitter(images.index_select(0, order), sorted_plan, ends)
    return result.index_select(0, order.argsort())


def _take(value, order):
    return None if value is None else value.index_select(0, order)


@pytest.mark.parametrize("grouped", [False, True])
def test_brightness_multiplies_and_clamps(grouped):
    images = torch.rand(6, 3, 8, 8, generator=generator(10))
    factors = torch.tensor([0.0, 0.5, 1.0, 1.3, 1.8, 2.0])
    ones, zeros = torch.ones(6), torch.zeros(6)
    order = torch.tensor([BRIGHTNESS, 1, 2, 3]).expand(6, 4)
    params = JitterParams(factors, ones, ones, zeros, order, applied=torch.ones(6, dtype=bool))
    plan = jitter_plan(params, with_hue=False)
    out = run_jitter(images, plan, grouped)
    expected = (images * factors.view(-1, 1, 1, 1)).clamp(0, 1)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("hue", [0.0, 0.2])
def test_masked_and_grouped_jitter_agree(hue):
    """The device path (masked, no synchronisation) and the CPU path (grouped) are one op."""
    jitter = {"prob": 0.7, "brightness": 0.8, "contrast": 0.8, "saturation": 0.8, "hue": hue}
    aug = BatchAugment.from_cfg(entry(crop_size=8, color_jitter=jitter))
    params = aug.sample_params(64, 8, 8, generator(33)).jitter
    plan = jitter_plan(params, with_hue=hue > 0)
    images = torch.rand(64, 3, 8, 8, generator=generator(34))
    masked = run_jitter(images, plan, grouped=False)
    torch.testing.assert_close(run_jitter(images, plan, grouped=True), masked, atol=1e-6, rtol=0)
    assert not torch.allclose(masked, images)


def test_hue_shift_zero_is_identity_and_matches_torchvision():
    images = torch.rand(16, 3, 8, 8, generator=generator(11))
    images[0] = 0.5  # gray: no hue
    torch.testing.assert_close(adjust_hue(images, torch.zeros(16)), images, atol=2e-6, rtol=0)
    shifts = torch.linspace(-0.5, 0.5, 16)
    reference = torch.stack(
        [tvf.adjust_hue(im, float(s)) for im, s in zip(images, shifts, strict=True)]
    )
    torch.testing.assert_close(adjust_hue(images, shifts), reference, atol=1e-5, rtol=0)


def test_grayscale_weights_match_torchvision():
    aug = BatchAugment.from_cfg(
        entry(crop_size=8, grayscale={"prob": 1.0}), mean=(0, 0, 0), std=(1, 1, 1)
    )
    images = torch.rand(4, 3, 8, 8, generator=generator(12))
    expected = tvf.rgb_to_grayscale(images, num_output_channels=3)
    torch.testing.assert_close(aug(images, generator(13)), expected, atol=1e-6, rtol=0)
    assert GRAY_WEIGHTS == (0.2989, 0.587, 0.114)


def test_fallback_box_matches_torchvision():
    """No trial fits (ratio 2..3 at full area): torchvision's central fallback crop."""
    boxes = sample_crop_boxes(4, 30, 30, (1.0, 1.0), (2.0, 3.0), generator(14), CPU)
    reference = v2.RandomResizedCrop(8, scale=(1.0, 1.0), ratio=(2.0, 3.0))
    torch.manual_seed(0)
    expected = reference.make_params([torch.zeros(3, 30, 30)])
    box = [expected["top"], expected["left"], expected["height"], expected["width"]]
    assert boxes.tolist() == [box] * 4


# ----------------------------------------------------------------------- shapes and seeds


@pytest.mark.parametrize("input_size", [(32, 32), (48, 20), (12, 12)])
def test_shape_and_range(input_size):
    aug = BatchAugment.from_cfg(FULL, mean=STL10_MEAN_STD[0], std=STL10_MEAN_STD[1])
    out = aug(torch.rand(10, 3, *input_size, generator=generator(15)), generator(16))
    assert out.shape == (10, 3, 24, 24) and out.dtype == torch.float32
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in STL10_MEAN_STD)
    pixels = out * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5


def test_tiny_batches_match_torchvision_including_no_jittered_sample():
    """Batches of 0 to 2 images: a batch where no sample draws colour jitter (1 in 5 for one
    image) runs (it once failed on an empty hue step) and every batch equals torchvision."""
    aug = BatchAugment.from_cfg(FULL, *CIFAR10_MEAN_STD)
    assert aug(torch.rand(0, 3, 32, 32), generator(0)).shape == (0, 3, 24, 24)
    none_jittered = 0
    for seed in range(16):
        images = torch.rand(1 + seed % 2, 3, 32, 32, generator=generator(seed))
        params = aug.sample_params(images.shape[0], 32, 32, generator(100 + seed))
        none_jittered += int(not params.jitter.applied.any())
        reference = replay_with_torchvision(aug, images, params)
        torch.testing.assert_close(run_params(aug, images, params), reference, atol=1e-4, rtol=0)
    assert none_jittered >= 1  # the case above is exercised


def test_single_channel_images():
    spec = dict(FULL, grayscale={"prob": 1.0})
    aug = BatchAugment.from_cfg(spec, mean=(0.5,), std=(0.5,))
    out = aug(torch.rand(5, 1, 30, 30, generator=generator(17)), generator(18))
    assert out.shape == (5, 1, 24, 24) and torch.isfinite(out).all()


def test_same_image_repeated_gets_different_augmentations():
    aug = BatchAugment.from_cfg(FULL)
    image = torch.rand(1, 3, 32, 32, generator=generator(19))
    out = aug(image.expand(64, -1, -1, -1), generator(20)).flatten(1)
    distances = torch.cdist(out, out) + torch.eye(64) * 1e9
    assert distances.min() > 1e-3  # 64 pairwise distinct outputs
    params = aug.sample_params(64, 32, 32, generator(21))
    assert len({tuple(box) for box in params.boxes.tolist()}) > 50
    assert params.jitter.brightness.unique().numel() > 40


@pytest.mark.parametrize("grouped", [True, False])
def test_per_batch_mode_shares_one_draw_across_the_call(grouped):
    """``mode="per_batch"`` (the reference code's augmentation): N copies of one image come out
    identical, every parameter is one draw broadcast to the batch, and a seed fixes it."""
    aug = BatchAugment.from_cfg(dict(FULL, equalization={"prob": 0.3}), mode="per_batch")
    image = torch.rand(1, 3, 32, 32, generator=generator(40))
    copies = image.expand(16, -1, -1, -1)
    params = aug.sample_params(16, 32, 32, generator(41))
    for name in ("boxes", "gray", "blurred", "blur_sigma", "solarized", "equalized", "flip"):
        drawn = getattr(params, name)
        assert drawn.shape[0] == 16 and (drawn == drawn[:1]).all(), name
    for name in ("brightness", "contrast", "saturation", "hue", "order", "applied"):
        drawn = getattr(params.jitter, name)
        assert drawn.shape[0] == 16 and (drawn == drawn[:1]).all(), name
    out = aug.apply(copies, aug.plan(params, 3, 32, 32), on_host=grouped)
    assert torch.equal(out, out[:1].expand_as(out))
    seeded = aug(copies, generator(42))
    assert torch.equal(seeded, seeded[:1].expand_as(seeded))
    assert torch.equal(aug(copies, generator(42)), seeded)
    assert not torch.allclose(aug(copies, generator(43)), seeded)
    # distinct images share the crop: each output is the batch-of-one result of its image
    images = torch.rand(4, 3, 32, 32, generator=generator(44))
    batch = aug(images, generator(45))
    alone = aug.apply(images[2:3], aug.plan(aug.sample_params(1, 32, 32, generator(45)), 3, 32, 32))
    torch.testing.assert_close(batch[2:3], alone, atol=1e-6, rtol=0)

    per_sample = BatchAugment.from_cfg(FULL)
    assert per_sample.mode == "per_sample"
    first = per_sample(copies, generator(42))
    assert torch.equal(per_sample(copies, generator(42)), first)
    assert not torch.allclose(first[0], first[1])
    with pytest.raises(ValueError, match=r"mode must be one of \('per_sample', 'per_batch'\)"):
        BatchAugment.from_cfg(FULL, mode="per_image")


def test_seed_determines_output():
    aug = BatchAugment.from_cfg(FULL)
    images = torch.rand(8, 3, 32, 32, generator=generator(22))
    first = aug(images, generator(23))
    assert torch.equal(first, aug(images, generator(23)))
    assert not torch.allclose(first, aug(images, generator(24)))


def test_reused_scratch_memory_keeps_calls_independent():
    """Scratch buffers are kept between calls: a later call with a smaller batch of another
    size gives a fresh instance's result (also after a deep copy), and earlier outputs stay."""
    aug = BatchAugment.from_cfg(FULL)
    first_images = torch.rand(20, 3, 20, 20, generator=generator(25))
    first = aug(first_images, generator(26))
    kept = first.clone()
    images = torch.rand(7, 3, 16, 16, generator=generator(27))
    second = aug(images, generator(28))
    assert torch.equal(first, kept)
    assert torch.equal(second, BatchAugment.from_cfg(FULL)(images, generator(28)))
    assert torch.equal(copy.deepcopy(aug)(images, generator(28)), second)
    assert torch.equal(aug(first_images, generator(26)), first)


def test_device_path_equals_host_path():
    """The one-piece, never-synchronising path (used on GPUs) gives the CPU path's result."""
    aug = BatchAugment.from_cfg(FULL)
    images = torch.rand(40, 3, 32, 32, generator=generator(35))
    params = aug.sample_params(40, 32, 32, generator(36))
    plan = aug.plan(params, 3, 32, 32)
    host = aug.apply(images, plan, on_host=True)
    torch.testing.assert_close(aug.apply(images, plan, on_host=False), host, atol=1e-5, rtol=0)


def test_normalize_only_resizes_and_normalizes():
    aug = BatchAugment.normalize_only(16, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    images = torch.rand(4, 3, 32, 32, generator=generator(27))
    expected = (tvf.resize(images, [16, 16], antialias=True) - 0.5) / 0.25
    torch.testing.assert_close(aug(images, generator(28)), expected, atol=1e-5, rtol=0)
    gray = BatchAugment.normalize_only(16, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25), grayscale=True)
    resized = tvf.resize(images, [16, 16], antialias=True)
    expected = (tvf.rgb_to_grayscale(resized, num_output_channels=3) - 0.5) / 0.25
    torch.testing.assert_close(gray(images, generator(28)), expected, atol=1e-5, rtol=0)


def test_views_are_num_crops_independent_draws():
    aug = BatchAugment.from_cfg(dict(FULL, num_crops=3))
    views = aug.views(torch.rand(4, 3, 32, 32, generator=generator(29)), generator(30))
    assert len(views) == 3 and not torch.allclose(views[0], views[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_never_synchronizes():
    aug = BatchAugment.from_cfg(FULL)
    images = torch.rand(16, 3, 32, 32, generator=generator(31))
    params = aug.sample_params(16, 32, 32, generator(32))
    expected = run_params(aug, images, params)
    cuda = torch.device("cuda")
    cuda_params = AugmentParams(
        **{
            name: None if value is None else _to(value, cuda)
            for name, value in vars(params).items()
        }
    )
    torch.testing.assert_close(run_params(aug, images.to(cuda), cuda_params).cpu(), expected)
    rng = torch.Generator(device=cuda).manual_seed(0)
    cuda_images = images.to(cuda)
    aug(cuda_images, rng)  # first call makes the per-device constants
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        aug(cuda_images, rng)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _to(value, device):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    return type(value)(**{k: v.to(device) for k, v in vars(value).items()})


# ------------------------------------------------- distributions against torchvision v2


def ks_statistic(a: torch.Tensor, b: torch.Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between empirical CDFs."""
    points = torch.cat([a, b]).sort().values
    cdf_a = torch.searchsorted(a.sort().values, points, right=True) / a.numel()
    cdf_b = torch.searchsorted(b.sort().values, points, right=True) / b.numel()
    return float((cdf_a - cdf_b).abs().max())


def assert_same_distribution(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    """KS test at significance 1e-3 (critical value 1.95 sqrt((n + m) / nm))."""
    n, m = ours.numel(), theirs.numel()
    critical = 1.95 * math.sqrt((n + m) / (n * m))
    statistic = ks_statistic(ours.flatten(), theirs.flatten())
    assert statistic < critical, f"KS statistic {statistic:.4f} >= {critical:.4f}"


def torchvision_samples(transform, image: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.stack([transform(image) for _ in range(count)])


def ramp_image(height: int, width: int) -> torch.Tensor:
    """Channel 0: column index, channel 1: row index, channel 2: zero (in [0, 1])."""
    cols = torch.arange(width).float().expand(height, width) / (width - 1)
    rows = torch.arange(height).float().unsqueeze(1).expand(height, width) / (height - 1)
    return torch.stack([cols, rows, torch.zeros(height, width)])


def test_crop_area_and_ratio_distribution_matches_torchvision():
    """Crop width/height read back from the spans of a coordinate-ramp image."""
    image = ramp_image(40, 40)
    scale, size = (0.08, 1.0), 16
    spec = entry(
        crop_size=size, rrc={"enabled": True, "crop_min_scale": 0.08, "crop_max_scale": 1.0}
    )
    ours = BatchAugment.from_cfg(spec, mean=(0, 0, 0), std=(1, 1, 1))(
        image.expand(KS_SAMPLES, -1, -1, -1), generator(40)
    )
    reference = v2.RandomResizedCrop(size, scale=scale, antialias=True)
    theirs = torchvision_samples(reference, image, KS_SAMPLES, seed=41)

    def spans(batch):
        width = batch[:, 0, 0, -1] - batch[:, 0, 0, 0]
        height = batch[:, 1, -1, 0] - batch[:, 1, 0, 0]
        return width * height, width / height

    (area_ours, ratio_ours), (area_theirs, ratio_theirs) = spans(ours), spans(theirs)
    assert_same_distribution(area_ours, area_theirs)
    assert_same_distribution(ratio_ours, ratio_theirs)
    assert_same_distribution(ours[:, 0, 0, 0], theirs[:, 0, 0, 0])  # left edge position


def test_crop_box_distribution_matches_torchvision_params():
    """Box sizes and positions against ``RandomResizedCrop.make_params`` on a non-square image
    (where some trials do not fit and the fallback matters)."""
    height, width, count = 30, 50, 3000
    ours = sample_crop_boxes(count, height, width, (0.08, 1.0), (0.75, 4 / 3), generator(50), CPU)
    reference = v2.RandomResizedCrop(8, scale=(0.08, 1.0))
    torch.manual_seed(51)
    frame = [torch.zeros(3, height, width)]
    theirs = torch.tensor(
        [
            [float(p["top"]), float(p["left"]), float(p["height"]), float(p["width"])]
            for p in (reference.make_params(frame) for _ in range(count))
        ]
    )
    for column in range(4):
        assert_same_distribution(ours[:, column], theirs[:, column])
    assert_same_distribution(ours[:, 2] * ours[:, 3], theirs[:, 2] * theirs[:, 3])
    assert_same_distribution(ours[:, 3] / ours[:, 2], theirs[:, 3] / theirs[:, 2])


def test_jitter_order_is_uniform_per_sample():
    """Each sample draws its own op order: all 24 orders, about equally often, in one batch."""
    params = BatchAugment.from_cfg(FULL).sample_params(2400, 32, 32, generator(52)).jitter
    orders, counts = params.order.unique(dim=0, return_counts=True)
    assert orders.shape[0] == 24
    assert counts.min() > 60 and counts.max() < 140  # expected 100, sd 9.8


def test_brightness_factor_distribution_matches_torchvision():
    image = torch.full((3, 4, 4), 0.5)
    ours = BatchAugment.from_cfg(
        entry(crop_size=4, color_jitter={"prob": 1.0, "brightness": 0.4}),
        mean=(0, 0, 0),
        std=(1, 1, 1),
    )(image.expand(KS_SAMPLES, -1, -1, -1), generator(42))
    theirs = torchvision_samples(v2.ColorJitter(brightness=0.4), image, KS_SAMPLES, seed=43)
    assert_same_distribution(ours.mean(dim=(1, 2, 3)), theirs.mean(dim=(1, 2, 3)))


def hue_of(images: torch.Tensor) -> torch.Tensor:
    """HSV hue in turns of the first pixel (torchvision's convention)."""
    r, g, b = images[:, 0, 0, 0], images[:, 1, 0, 0], images[:, 2, 0, 0]
    return torch.atan2(math.sqrt(3) * (g - b), 2 * r - g - b) / (2 * math.pi)


def test_hue_shift_distribution_matches_torchvision():
    image = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1).expand(3, 4, 4).clone()
    ours = BatchAugment.from_cfg(
        entry(crop_size=4, color_jitter={"prob": 1.0, "hue": 0.1}), mean=(0, 0, 0), std=(1, 1, 1)
    )(image.expand(KS_SAMPLES, -1, -1, -1), generator(44))
    theirs = torchvision_samples(v2.ColorJitter(hue=0.1), image, KS_SAMPLES, seed=45)
    assert_same_distribution(hue_of(ours), hue_of(theirs))


def test_full_jitter_with_random_order_matches_torchvision():
    """All four ops with a random per-sample order: per-channel means and contrast agree.
    Values are compared on a 1e-4 grid: the 20% of samples left unjittered form an atom at
    the input's value, which float noise of 1e-7 must not smear into a KS gap."""
    image = torch.rand(3, 6, 6, generator=generator(46))
    jitter = {"prob": 0.8, "brightness": 0.4, "contrast": 0.4, "saturation": 0.4, "hue": 0.1}
    ours = BatchAugment.from_cfg(
        entry(crop_size=6, color_jitter=jitter), mean=(0, 0, 0), std=(1, 1, 1)
    )(image.expand(KS_SAMPLES, -1, -1, -1), generator(47))
    reference = v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)
    theirs = torchvision_samples(reference, image, KS_SAMPLES, seed=48)
    ours, theirs = (values.mul(1e4).round() for values in (ours, theirs))
    for channel in range(3):
        assert_same_distribution(
            ours[:, channel].mean(dim=(1, 2)), theirs[:, channel].mean(dim=(1, 2))
        )
    assert_same_distribution(ours.std(dim=(1, 2, 3)), theirs.std(dim=(1, 2, 3)))


def test_grayscale_and_flip_fractions_match_probabilities():
    image = ramp_image(8, 8)
    image[2] = 0.7
    spec = entry(crop_size=8, grayscale={"prob": 0.2}, horizontal_flip={"prob": 0.5})
    ours = BatchAugment.from_cfg(spec, mean=(0, 0, 0), std=(1, 1, 1))(
        image.expand(4000, -1, -1, -1), generator(49)
    )
    gray = (ours[:, 0] == ours[:, 1]).all(dim=(1, 2)) & (ours[:, 1] == ours[:, 2]).all(dim=(1, 2))
    flipped = ours[:, :, 4, 0].sum(dim=1) > ours[:, :, 4, -1].sum(dim=1)
    # binomial standard errors: 0.0063 (p=0.2) and 0.0079 (p=0.5); 4 sigma tolerance
    assert abs(gray.float().mean() - 0.2) < 0.026
    assert abs(flipped.float().mean() - 0.5) < 0.032


# ----------------------------------------------------------------------------- config


def test_solo_learn_entry_parses_with_all_keys():
    solo_entry = {
        "rrc": {"enabled": True, "crop_min_scale": 0.08, "crop_max_scale": 1.0},
        "color_jitter": {
            "prob": 0.8,
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.2,
            "hue": 0.1,
        },
        "grayscale": {"prob": 0.2},
        "gaussian_blur": {"prob": 0.0},
        "solarization": {"prob": 0.2},
        "equalization": {"prob": 0.0},
        "horizontal_flip": {"prob": 0.5},
        "crop_size": 32,
        "num_crops": 2,
    }
    aug = BatchAugment.from_cfg(solo_entry, mean=CIFAR10_MEAN_STD[0], std=CIFAR10_MEAN_STD[1])
    assert aug.crop_size == 32 and aug.num_crops == 2
    assert aug.spec.color_jitter.saturation == 0.2 and aug.spec.solarization.prob == 0.2
    assert (aug.mean, aug.std) == CIFAR10_MEAN_STD


def test_mean_std_precedence():
    spec = {"crop_size": 8, "mean": [0.1, 0.2, 0.3], "std": [0.4, 0.5, 0.6]}
    assert BatchAugment.from_cfg(spec).mean == (0.1, 0.2, 0.3)
    explicit = BatchAugment.from_cfg(spec, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    assert explicit.mean == (0.0, 0.0, 0.0) and explicit.std == (1.0, 1.0, 1.0)
    assert BatchAugment.from_cfg({"crop_size": 8}).mean == (0.485, 0.456, 0.406)


@pytest.mark.parametrize(
    ("bad_entry", "message"),
    [
        ({"crop_size": 8, "colour_jitter": {}}, r"unknown key\(s\) \['colour_jitter'\].*allowed"),
        ({"crop_size": 8, "rrc": {"min_scale": 0.2}}, r"\['min_scale'\] in .*rrc.*crop_min_scale"),
        ({"crop_size": 8, "grayscale": {"prob": 1.5}}, r"grayscale.prob must be a probability"),
        ({"crop_size": 8, "color_jitter": {"hue": 0.7}}, r"hue must be in \[0, 0.5\]"),
        ({"crop_size": 8.5}, r"crop_size must be an integer"),
        ({"crop_size": 8, "rrc": {"enabled": "yes"}}, r"rrc: enabled must be true or false"),
        ({"num_crops": 2}, r"missing required key\(s\) \['crop_size'\]"),
        ({"crop_size": 8, "rrc": {"crop_min_scale": 0.9, "crop_max_scale": 0.5}}, r"min <= max"),
    ],
)
def test_bad_entries_raise_clear_errors(bad_entry, message):
    with pytest.raises(AugmentConfigError, match=message):
        AugmentSpec.from_mapping(bad_entry)


def test_bad_inputs_raise_clear_errors():
    aug = BatchAugment.from_cfg({"crop_size": 8})
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        aug(torch.rand(3, 8, 8), generator(0))
    with pytest.raises(ValueError, match="floating point"):
        aug(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), generator(0))
    with pytest.raises(ValueError, match="mean/std have 3 values"):
        BatchAugment.from_cfg({"crop_size": 8})(torch.rand(1, 1, 8, 8), generator(0))
    with pytest.raises(ValueError, match="interpolation"):
        BatchAugment.from_cfg({"crop_size": 8}, interpolation="nearest")
