"""The embedded ``digits`` dataset: deterministic rendering, a split by source digit, the cache,
and the registry path through the real loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from sklearn.datasets import load_digits

from solo_sqsp.data import (
    DataConfigError,
    make_classification_dataloaders,
    make_pretrain_dataloader,
    validate_data_cfg,
)
from solo_sqsp.data import digits as digits_module
from solo_sqsp.data.digits import (
    LUMINANCE,
    DigitsBuilder,
    DigitsRendering,
    _contrasting_colours,
    cache_file,
    load_embedded_digits,
    render_digits,
    render_embedded_digits,
)

RENDERING = DigitsRendering()


@pytest.fixture(scope="module")
def digits():
    return render_embedded_digits()


def digits_cfg(train_path: object = None, **data) -> OmegaConf:
    view = {
        "rrc": {"enabled": True, "crop_min_scale": 0.5, "crop_max_scale": 1.0},
        "color_jitter": {
            "prob": 0.8,
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.4,
            "hue": 0.1,
        },
        "grayscale": {"prob": 0.2},
        "gaussian_blur": {"prob": 0.0},
        "solarization": {"prob": 0.0},
        "equalization": {"prob": 0.0},
        "horizontal_flip": {"prob": 0.0},
        "crop_size": 16,
        "num_crops": 2,
    }
    data = {"dataset": "digits", "num_workers": 0, "train_path": train_path} | data
    return OmegaConf.create({"data": data, "augmentations": [view]})


def test_two_builds_are_identical(digits):
    again = render_embedded_digits()
    for split in ("train", "val"):
        for name in ("images", "targets", "sources"):
            np.testing.assert_array_equal(
                getattr(getattr(digits, split), name), getattr(getattr(again, split), name)
            )


def test_another_seed_renders_other_images(digits):
    other = render_embedded_digits(DigitsRendering(seed=1))
    assert not np.array_equal(other.val.sources, digits.val.sources)


def test_splits_are_disjoint_by_source_and_cover_every_digit(digits):
    train, val = set(digits.train.sources.tolist()), set(digits.val.sources.tolist())
    assert not train & val
    assert train | val == set(range(1797))
    assert len(val) == pytest.approx(0.2 * 1797, abs=1)
    assert np.all(np.bincount(digits.train.sources)[sorted(train)] == RENDERING.train_renders)
    assert np.all(np.bincount(digits.val.sources)[sorted(val)] == RENDERING.val_renders)
    source_targets = load_digits().target
    for split in (digits.train, digits.val):
        np.testing.assert_array_equal(split.targets, source_targets[split.sources])


def test_shapes_dtypes_and_ranges(digits):
    assert digits.train.images.shape == (1437 * 3, 16, 16, 3)
    assert digits.val.images.shape == (360 * 2, 16, 16, 3)
    for split in (digits.train, digits.val):
        assert split.images.dtype == np.uint8
        assert split.targets.dtype == np.int64
        assert split.targets.min() == 0 and split.targets.max() == 9
        # every image uses most of the 8-bit range (colours differ; noise on top)
        spread = split.images.reshape(len(split.images), -1).astype(int)
        assert np.all(spread.max(1) - spread.min(1) > 60)


def test_classes_are_balanced(digits):
    for split in (digits.train, digits.val):
        counts = np.bincount(split.targets, minlength=10)
        assert counts.min() >= 0.9 * counts.mean() and counts.max() <= 1.1 * counts.mean()


def test_colours_keep_the_luminance_gap():
    pairs = _contrasting_colours(np.random.default_rng(0), 5000, 0.3)
    gap = np.abs(pairs[:, 0] @ LUMINANCE - pairs[:, 1] @ LUMINANCE)
    assert pairs.shape == (5000, 2, 3) and gap.min() > 0.3
    assert pairs.min() >= 0 and pairs.max() <= 1


def test_digit_sits_inside_the_image_at_the_rendered_size():
    """Without noise, the pixels that differ from the background form a box of 11-14 px."""
    source = load_digits().images[:50]
    rendering = DigitsRendering(noise_std=0.0)
    images = render_digits(source, 4, rendering, np.random.default_rng(0)).astype(int)
    sizes = []
    for image in images:
        colours, counts = np.unique(image.reshape(-1, 3), axis=0, return_counts=True)
        changed = np.any(image != colours[counts.argmax()], axis=2)  # not the background
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        sizes.append(max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1)
    assert min(sizes) >= 8 and max(sizes) <= 14
    assert len(set(sizes)) > 2  # sizes vary


def test_normalization_matches_the_training_split(digits):
    pixels = digits.train.images.reshape(-1, 3) / 255
    stats = DigitsBuilder.pretrain_normalization
    np.testing.assert_allclose(pixels.mean(0), stats.mean, atol=0.005)
    np.testing.assert_allclose(pixels.std(0), stats.std, atol=0.005)


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    first = load_embedded_digits(tmp_path)
    file = cache_file(tmp_path)
    assert file.is_file() and [p.name for p in tmp_path.iterdir()] == [file.name]

    def no_render(*args, **kwargs):
        raise AssertionError("rendered again despite the cache")

    monkeypatch.setattr(digits_module, "render_embedded_digits", no_render)
    cached = load_embedded_digits(tmp_path)
    np.testing.assert_array_equal(cached.train.images, first.train.images)
    np.testing.assert_array_equal(cached.val.sources, first.val.sources)


def test_corrupt_cache_is_rebuilt(tmp_path, digits):
    file = cache_file(tmp_path)
    file.write_bytes(b"PK\x03\x04 truncated")
    rebuilt = load_embedded_digits(tmp_path)
    np.testing.assert_array_equal(rebuilt.train.images, digits.train.images)
    assert file.stat().st_size > 1000


def test_cache_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(digits_module.CACHE_ENV, str(tmp_path / "cache"))
    key, folder = DigitsBuilder().location(digits_cfg(), "pretrain")
    assert key == digits_module.CACHE_ENV and folder == str(tmp_path / "cache")
    validate_data_cfg(digits_cfg())
    assert cache_file(tmp_path / "cache").is_file()


def test_unwritable_cache_is_a_data_config_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(DataConfigError, match=r"data.train_path=.*a_file.*writable folder"):
        validate_data_cfg(digits_cfg(blocker / "cache"))


def test_pretrain_loader_gives_two_view_batches(tmp_path):
    cfg = digits_cfg(tmp_path)
    validate_data_cfg(cfg)
    torch.manual_seed(0)
    loader = make_pretrain_dataloader(cfg, batch_size=16)
    indexes, views, targets = next(iter(loader))
    assert len(views) == 2 and all(view.shape == (16, 3, 16, 16) for view in views)
    assert not torch.equal(views[0], views[1])
    assert indexes.shape == (16,) and targets.min() >= 0 and targets.max() <= 9
    assert len(loader.dataset) == 1437 * 3


def test_fraction_subsamples_like_cifar(tmp_path):
    loader = make_pretrain_dataloader(digits_cfg(tmp_path, fraction=0.1), batch_size=16)
    targets = loader.dataset.dataset.targets
    assert len(targets) == round(0.1 * 1437 * 3)
    assert len(loader.dataset.dataset.data) == len(targets)
    assert np.bincount(targets, minlength=10).min() > 0


def test_classification_loaders_read_both_splits(tmp_path):
    train, val = make_classification_dataloaders(digits_cfg(tmp_path), batch_size=64)
    images, targets = next(iter(val))
    assert images.shape == (64, 3, 16, 16) and targets.dtype == torch.int64
    assert len(train.dataset) == 1437 * 3 and len(val.dataset) == 360 * 2
