"""Real-data side: dataset checks, augmentation pipelines and loaders on stand-in files written in
the real formats and read by torchvision's real readers (CIFAR10/100, STL10, ImageFolder).

Tests marked ``solo`` need solo-learn's current source on PYTHONPATH and compare its data pieces
with the built-in ones."""

from __future__ import annotations

import pickle
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from PIL import Image, ImageOps
from standin_data import (
    trust_checksums,
    write_cifar,
    write_flat_images,
    write_image_folder,
    write_stl10,
)
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100, STL10

from solo_sqsp.data import (
    DataConfigError,
    DatasetBuilder,
    active_backend,
    has_validation_split,
    make_classification_dataloaders,
    make_classification_transforms,
    make_pretrain_dataloader,
    make_pretrain_transform,
    register_dataset,
    validate_data_cfg,
)
from solo_sqsp.data import datasets as datasets_module
from solo_sqsp.data.datasets import CIFAR_EVAL_NORMALIZATION, Normalization

CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def pipeline(crop_size: int = 32, num_crops: int = 2, **probs: float) -> dict:
    """One augmentation entry in solo-learn's schema; ``probs`` override the probabilities."""
    p = {"jitter": 0.8, "gray": 0.2, "blur": 0.5, "solar": 0.2, "equal": 0.1, "flip": 0.5} | probs
    return {
        "rrc": {"enabled": True, "crop_min_scale": 0.2, "crop_max_scale": 1.0},
        "color_jitter": {
            "prob": p["jitter"],
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.2,
            "hue": 0.1,
        },
        "grayscale": {"prob": p["gray"]},
        "gaussian_blur": {"prob": p["blur"]},
        "solarization": {"prob": p["solar"]},
        "equalization": {"prob": p["equal"]},
        "horizontal_flip": {"prob": p["flip"]},
        "crop_size": crop_size,
        "num_crops": num_crops,
    }


def make_cfg(
    dataset: str, train_path: object, augmentations: list | None = None, **data
) -> DictConfig:
    return OmegaConf.create(
        {
            "data": {"dataset": dataset, "train_path": str(train_path), "num_workers": 0} | data,
            "augmentations": augmentations or [pipeline()],
            "optimizer": {"batch_size": 8},
        }
    )


def unnormalize(x: torch.Tensor, norm: tuple) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in norm)
    return x * std + mean


@pytest.fixture
def cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = write_cifar(tmp_path / "cifar", CIFAR10, train_per_file=8, num_test=20)
    trust_checksums(monkeypatch, CIFAR10, standin)
    return standin.root


@pytest.fixture
def stl10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    standin = write_stl10(tmp_path / "stl", num_train=10, num_unlabeled=6, num_test=10)
    trust_checksums(monkeypatch, STL10, standin)
    return standin.root


def seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)
    random.seed(seed)


# --- pretraining loaders -------------------------------------------------------------------------


def test_cifar10_pretrain_batches_hold_index_two_differing_views_and_labels(cifar10: Path) -> None:
    loader = make_pretrain_dataloader(make_cfg("cifar10", cifar10), batch_size=8)
    assert len(loader) == 5
    seeded()
    seen = []
    for indexes, views, targets in loader:
        assert len(views) == 2
        for view in views:
            assert view.shape == (8, 3, 32, 32) and view.dtype == torch.float32
            pixels = unnormalize(view, (CIFAR10_MEAN, CIFAR10_STD))
            assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        assert not torch.equal(views[0], views[1])
        assert targets.dtype == torch.int64 and targets.min() >= 0 and targets.max() < 10
        seen += indexes.tolist()
    assert sorted(seen) == list(range(40))


def test_cifar100_asymmetric_pipelines_give_one_view_each(tmp_path, monkeypatch) -> None:
    standin = write_cifar(tmp_path, CIFAR100, train_per_file=30, num_test=10)
    trust_checksums(monkeypatch, CIFAR100, standin)
    augs = [pipeline(32, 1, blur=1.0), pipeline(24, 1, solar=1.0)]
    loader = make_pretrain_dataloader(make_cfg("cifar100", tmp_path, augs), batch_size=10)
    seeded()
    indexes, views, targets = next(iter(loader))
    assert [v.shape for v in views] == [(10, 3, 32, 32), (10, 3, 24, 24)]
    assert len(loader.dataset) == 30 and targets.max() < 100
    assert indexes.max() < 30


def test_stl10_pretrains_on_train_plus_unlabeled(stl10: Path) -> None:
    cfg = make_cfg("stl10", stl10, [pipeline(64)])
    loader = make_pretrain_dataloader(cfg, batch_size=4)
    seeded()
    batches = list(loader)
    targets = torch.cat([t for _, _, t in batches])
    assert batches[0][1][0].shape == (4, 3, 64, 64)
    assert sorted(torch.cat([i for i, _, _ in batches]).tolist()) == list(range(16))
    assert (targets == -1).sum() == 6 and ((targets >= 0) & (targets < 10)).sum() == 10


def test_custom_image_folder_and_flat_unlabeled_folder(tmp_path: Path) -> None:
    tree = write_image_folder(tmp_path / "tree", ["a", "b", "c"], 4, (40, 30))
    augs = [pipeline(24)]
    seeded()
    _, views, targets = next(iter(make_pretrain_dataloader(make_cfg("custom", tree, augs), 6)))
    assert views[1].shape == (6, 3, 24, 24)
    assert set(targets.tolist()) <= {0, 1, 2}
    flat = write_flat_images(tmp_path / "flat", 6, (30, 40))
    cfg = make_cfg("custom", flat, augs, no_labels=True)
    _, views, targets = next(iter(make_pretrain_dataloader(cfg, 6)))
    assert views[0].shape == (6, 3, 24, 24) and targets.tolist() == [-1] * 6


def test_fraction_keeps_a_stratified_share_with_indexes_in_range(cifar10: Path) -> None:
    loader = make_pretrain_dataloader(make_cfg("cifar10", cifar10, fraction=0.5), batch_size=4)
    assert len(loader.dataset) == 20
    indexes, targets = [], []
    for i, _, t in loader:
        indexes += i.tolist()
        targets += t.tolist()
    assert sorted(indexes) == list(range(20))
    assert np.bincount(targets, minlength=10).tolist() == [2] * 10


@pytest.mark.parametrize(
    ("fraction", "message"),
    [(1.5, "data.fraction=1.5: expected a number below 1"), (0.1, "every class represented")],
)
def test_fraction_errors(cifar10: Path, fraction: float, message: str) -> None:
    with pytest.raises(DataConfigError, match=message):
        make_pretrain_dataloader(make_cfg("cifar10", cifar10, fraction=fraction), batch_size=2)


# --- evaluation loaders --------------------------------------------------------------------------


def test_cifar_eval_val_split_is_the_plain_normalised_test_batch(cifar10: Path) -> None:
    train, val = make_classification_dataloaders(make_cfg("cifar10", cifar10), batch_size=5)
    seeded()
    images, targets = next(iter(train))
    assert images.shape == (5, 3, 32, 32) and targets.max() < 10
    with open(cifar10 / "cifar-10-batches-py" / "test_batch", "rb") as file:
        stored = pickle.load(file)
    raw = torch.tensor(stored["data"][:5].reshape(5, 3, 32, 32), dtype=torch.float32) / 255
    images, targets = next(iter(val))
    norm = (CIFAR_EVAL_NORMALIZATION.mean, CIFAR_EVAL_NORMALIZATION.std)
    assert torch.allclose(unnormalize(images, norm), raw, atol=1e-6)
    assert targets.tolist() == stored["labels"][:5]
    assert len(train.dataset) == 40 and len(val.dataset) == 20


@pytest.mark.both_bases
def test_eval_grayscale_reads_every_evaluation_image_in_grayscale(cifar10: Path) -> None:
    """``data.eval_grayscale``: linear training crops and validation images have three equal
    channels (torchvision's grayscale of the stored image) before normalisation, with the
    builtin transforms and with solo-learn's own (CI's solo-learn pass)."""
    norm = (CIFAR_EVAL_NORMALIZATION.mean, CIFAR_EVAL_NORMALIZATION.std)
    train, val = make_classification_dataloaders(
        make_cfg("cifar10", cifar10, eval_grayscale=True), batch_size=5
    )
    seeded()
    for images, _ in (next(iter(train)), next(iter(val))):
        raw = unnormalize(images, norm)
        assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5)
        assert torch.allclose(raw[:, 0], raw[:, 2], atol=1e-5)
    with open(cifar10 / "cifar-10-batches-py" / "test_batch", "rb") as file:
        stored = pickle.load(file)
    colour = stored["data"][:5].reshape(5, 3, 32, 32).transpose(0, 2, 3, 1)
    expected = [np.asarray(Image.fromarray(image).convert("L")) for image in colour]
    assert torch.allclose(raw[:, 0], torch.tensor(np.stack(expected)) / 255, atol=1e-6)
    colour_val = next(iter(make_classification_dataloaders(make_cfg("cifar10", cifar10), 5)[1]))
    assert not torch.allclose(unnormalize(colour_val[0], norm)[:, 0], raw[:, 0])


def test_stl10_eval_at_native_96_and_overridden_64(stl10: Path) -> None:
    cfg = make_cfg("stl10", stl10)
    train, val = make_classification_dataloaders(cfg, batch_size=5)
    assert len(train.dataset) == 10 and len(val.dataset) == 10
    images, targets = next(iter(val))
    assert images.shape == (5, 3, 96, 96) and targets.tolist() == [0, 1, 2, 3, 4]
    train, val = make_classification_dataloaders(cfg, batch_size=5, crop_size=64)
    assert next(iter(train))[0].shape == (5, 3, 64, 64)
    assert next(iter(val))[0].shape == (5, 3, 64, 64)


def test_imagenet100_eval_at_96_and_knn_train_without_augmentation(tmp_path: Path) -> None:
    classes = [f"n{i:08d}" for i in range(100)]
    cfg = make_cfg(
        "imagenet100",
        write_image_folder(tmp_path / "train", classes, 1, (60, 50)),
        val_path=str(write_image_folder(tmp_path / "val", classes, 1, (50, 60), seed=1)),
    )
    train, val = make_classification_dataloaders(cfg, batch_size=10, crop_size=96)
    assert next(iter(train))[0].shape == (10, 3, 96, 96)
    assert next(iter(val))[0].shape == (10, 3, 96, 96)
    knn_train, _ = make_classification_dataloaders(cfg, 10, train_augmentation=False)
    first, again = knn_train.dataset[0][0], knn_train.dataset[0][0]
    assert first.shape == (3, 224, 224) and torch.equal(first, again)


# --- built-in augmentation semantics -------------------------------------------------------------


def test_builtin_pipeline_applies_solo_learn_steps_in_order(tmp_path: Path) -> None:
    """rrc disabled (bicubic resize of the shorter side), solarize then flip, custom mean/std."""
    entry = pipeline(16, 1, jitter=0, gray=0, blur=0, solar=1.0, equal=0, flip=1.0)
    entry |= {"rrc": {"enabled": False}, "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}
    cfg = make_cfg("custom", tmp_path, [entry])
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 48, 3), np.uint8))
    (view,) = make_pretrain_transform(cfg, backend="builtin")(image)
    expected = ImageOps.mirror(ImageOps.solarize(image.resize((24, 16), Image.BICUBIC), 128))
    expected = torch.tensor(np.asarray(expected), dtype=torch.float32).permute(2, 0, 1) / 255
    assert view.shape == (3, 16, 24)
    assert torch.allclose(view, (expected - 0.5) / 0.25, atol=1e-6)


# --- checks before training ----------------------------------------------------------------------


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:1000])


def _cifar_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str) -> Path:
    standin = write_cifar(tmp_path / "data", CIFAR10, train_per_file=4, num_test=4)
    trust_checksums(monkeypatch, CIFAR10, standin)
    base = standin.root / "cifar-10-batches-py"
    if damage == "truncated":
        _truncate(base / "data_batch_3")
    elif damage == "inside":
        return base
    elif damage == "archive":
        shutil.rmtree(base)
        (standin.root / "cifar-10-python.tar.gz").write_bytes(b"stand-in archive")
    elif damage == "other":
        shutil.rmtree(base)
        (standin.root / "README").write_text("not cifar")
    return standin.root


@pytest.mark.parametrize(
    ("damage", "where", "expected"),
    [
        (
            "missing",
            "data/nope",
            ["does not exist", "torchvision.datasets.CIFAR10(", "download=True"],
        ),
        ("empty", "data/empty", ["is an empty folder", "cifar-10-batches-py"]),
        ("other", "data", ["has no cifar-10-batches-py/ folder inside", "data_batch_1"]),
        ("inside", "data/cifar-10-batches-py", ["folder itself", "data.train_path="]),
        ("archive", "data", ["holds the archive cifar-10-python.tar.gz", "tar -xzf"]),
        ("truncated", "data", ["cifar-10-batches-py, data_batch_3", "checksums", "delete"]),
    ],
)
def test_cifar_folder_problems_are_named_with_path_and_fix(
    tmp_path, monkeypatch, damage: str, where: str, expected: list[str]
) -> None:
    _cifar_case(tmp_path, monkeypatch, damage)
    (tmp_path / "data" / "empty").mkdir(exist_ok=True)
    path = tmp_path / where
    with pytest.raises(DataConfigError) as raised:
        validate_data_cfg(make_cfg("cifar10", path))
    message = str(raised.value)
    assert f"data.train_path='{path}'" in message
    for text in expected:
        assert text in message
    if damage == "inside":
        assert f"data.train_path={tmp_path / 'data'}" in message


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (
            "no_binary",
            ["has no stl10_binary/ folder", "torchvision.datasets.STL10(", "download=True"],
        ),
        ("truncated", ["unlabeled_X.bin", "not a whole number of 3x96x96 images", "truncated"]),
        ("labels", ["train_y.bin", "holds 9 labels for the 10 images"]),
    ],
)
def test_stl10_folder_problems(tmp_path, damage: str, expected: list[str]) -> None:
    root = write_stl10(tmp_path / "stl", 10, 2, 10).root
    base = root / "stl10_binary"
    if damage == "no_binary":
        shutil.rmtree(base)
        (root / "notes.txt").write_text("stand-in")
    elif damage == "truncated":
        _truncate(base / "unlabeled_X.bin")
    else:
        (base / "train_y.bin").write_bytes((base / "train_y.bin").read_bytes()[:9])
    with pytest.raises(DataConfigError) as raised:
        validate_data_cfg(make_cfg("stl10", root, [pipeline(64)]))
    assert str(root) in str(raised.value)
    for text in expected:
        assert text in str(raised.value)


def test_stl10_checksum_failure_when_opening_is_a_data_config_error(tmp_path: Path) -> None:
    """Structurally fine but not the official files: torchvision's checksum check fails."""
    root = write_stl10(tmp_path / "stl", 4, 2, 4).root
    with pytest.raises(DataConfigError, match="torchvision could not read them") as raised:
        make_pretrain_dataloader(make_cfg("stl10", root, [pipeline(64)]), batch_size=2)
    assert str(root) in str(raised.value)


def test_image_folder_problems(tmp_path: Path) -> None:
    flat = write_flat_images(tmp_path / "flat", 3, (20, 20))
    with pytest.raises(DataConfigError, match="holds 3 images but no class sub-folders") as raised:
        validate_data_cfg(make_cfg("custom", flat))
    assert "data.no_labels=True" in str(raised.value) and str(flat) in str(raised.value)

    tree = write_image_folder(tmp_path / "tree", ["cat", "dog"], 2, (20, 20))
    (tree / "empty_class").mkdir()
    with pytest.raises(DataConfigError, match="class folders without any image: empty_class"):
        validate_data_cfg(make_cfg("custom", tree))

    three = write_image_folder(tmp_path / "three", ["a", "b", "c"], 1, (20, 20))
    with pytest.raises(DataConfigError, match=r"has 3 class folders .*100 classes for imagenet100"):
        validate_data_cfg(make_cfg("imagenet100", three))

    root = tmp_path / "imagenet"
    for split in ("train", "val"):
        write_image_folder(root / split, ["n01", "n02"], 1, (20, 20))
    with pytest.raises(DataConfigError, match="holds the split folders train, val") as raised:
        validate_data_cfg(make_cfg("imagenet", root))
    assert f"data.train_path={root / 'train'}" in str(raised.value)

    (flat / "subfolder").mkdir()
    with pytest.raises(DataConfigError, match="holds entries that are not image files: subfolder"):
        validate_data_cfg(make_cfg("custom", flat, no_labels=True))


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            {"data": {"format": "h5"}},
            ["data.format='h5' is not supported", "data.format=image_folder"],
        ),
        ({"data": {"format": "dali"}}, ["data.format='dali' is not supported", "DALI"]),
        (
            {"data": {"dataset": "mnist"}},
            ["'mnist' is not a known dataset", "cifar10, cifar100, custom"],
        ),
        ({"augmentations": [{"crop_size": 32}]}, ["augmentations[0] lacks num_crops, rrc.enabled"]),
        ({"data": {"num_workers": -1}}, ["data.num_workers=-1"]),
        ({"data": {"eval_grayscale": "yes"}}, ["data.eval_grayscale='yes': expected True"]),
    ],
)
def test_config_key_problems(cifar10: Path, overrides: dict, expected: list[str]) -> None:
    cfg = OmegaConf.merge(make_cfg("cifar10", cifar10), overrides)
    with pytest.raises(DataConfigError) as raised:
        validate_data_cfg(cfg)
    for text in expected:
        assert text in str(raised.value)


def test_batch_larger_than_the_split_and_missing_val_path(tmp_path: Path, cifar10: Path) -> None:
    with pytest.raises(DataConfigError, match="holds 40 images, fewer than one batch of 64"):
        make_pretrain_dataloader(make_cfg("cifar10", cifar10), batch_size=64)
    tree = write_image_folder(tmp_path / "tree", ["a", "b"], 2, (20, 20))
    with pytest.raises(DataConfigError, match=r"data\.val_path=None: is not set"):
        make_classification_dataloaders(make_cfg("custom", tree), batch_size=2)
    with pytest.raises(DataConfigError, match=f"data.val_path='{tmp_path}': has no cifar-10"):
        validate_data_cfg(make_cfg("cifar10", cifar10, val_path=str(tmp_path)))


def test_which_pretraining_runs_get_a_validation_loader(tmp_path: Path) -> None:
    assert has_validation_split(make_cfg("cifar10", tmp_path))
    assert not has_validation_split(make_cfg("imagenet", tmp_path))
    assert has_validation_split(make_cfg("imagenet", tmp_path, val_path=str(tmp_path)))
    assert not has_validation_split(
        make_cfg("custom", tmp_path, val_path=str(tmp_path), no_labels=True)
    )


# --- registry ------------------------------------------------------------------------------------


class ColourSquares(Dataset):
    """In-memory solid-colour squares; ``data``/``targets`` layout, so data.fraction works."""

    def __init__(self, count: int, transform) -> None:
        self.data = np.repeat(np.arange(count, dtype=np.uint8)[:, None, None, None] * 20, 3, -1)
        self.data = np.broadcast_to(self.data, (count, 16, 16, 3)).copy()
        self.targets = [i % 2 for i in range(count)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.data[index])), self.targets[index]


class ColourSquaresBuilder(DatasetBuilder):
    num_classes = 2
    pretrain_normalization = Normalization((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    eval_normalization = pretrain_normalization
    eval_crop_size = 16
    eval_resize = "square"

    def has_online_val(self, cfg: DictConfig) -> bool:
        return True

    def check(self, cfg: DictConfig, split: str) -> None:
        pass

    def open(self, cfg: DictConfig, split: str, transform) -> Dataset:
        return ColourSquares(12 if split == "val" else 8, transform)


def test_a_registered_dataset_feeds_every_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets_module, "DATASETS", dict(datasets_module.DATASETS))
    register_dataset("squares", ColourSquaresBuilder())
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("squares", ColourSquaresBuilder())
    cfg = make_cfg("squares", None, [pipeline(16)], fraction=0.5)
    validate_data_cfg(cfg)
    assert has_validation_split(cfg)
    _, views, _ = next(iter(make_pretrain_dataloader(cfg, batch_size=4)))
    assert views[0].shape == (4, 3, 16, 16)
    train, val = make_classification_dataloaders(cfg, batch_size=4)
    assert len(train.dataset) == 8 and len(val.dataset) == 12


# --- solo-learn backend --------------------------------------------------------------------------


@pytest.fixture
def solo_learn():
    return pytest.importorskip("solo.data.pretrain_dataloader")


@pytest.mark.solo
def test_solo_learn_backend_is_active_when_importable(solo_learn) -> None:
    assert active_backend() == "solo-learn"


@pytest.mark.solo
@pytest.mark.parametrize("dataset", ["cifar10", "cifar100", "stl10", "imagenet", "custom"])
def test_builtin_pipelines_reproduce_solo_learns_views(solo_learn, tmp_path, dataset) -> None:
    entries = [pipeline(24, 2, jitter=0.7, gray=0.5, blur=0.5, solar=0.5, equal=0.5, flip=0.5)]
    entries.append(pipeline(16, 1) | {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]})
    cfg = make_cfg(dataset, tmp_path, entries)
    image = Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 36, 3), np.uint8))
    for seed in range(8):
        seeded(seed)
        solo_views = make_pretrain_transform(cfg, backend="solo-learn")(image)
        seeded(seed)
        builtin_views = make_pretrain_transform(cfg, backend="builtin")(image)
        assert len(solo_views) == len(builtin_views) == 3
        for ours, theirs in zip(builtin_views, solo_views, strict=True):
            assert torch.equal(ours, theirs)
    if dataset.startswith("cifar"):  # solo-learn's CIFAR evaluation expects 32x32 images
        image = image.crop((0, 0, 32, 32))
    solo_transforms = make_classification_transforms(cfg, backend="solo-learn")
    builtin_transforms = make_classification_transforms(cfg, backend="builtin")
    for theirs, ours in zip(solo_transforms, builtin_transforms, strict=True):
        for seed in range(4):
            seeded(seed)
            expected = theirs(image)
            seeded(seed)
            assert torch.allclose(ours(image), expected, atol=1e-6)


@pytest.mark.solo
def test_solo_learn_and_builtin_loaders_give_the_same_batches(solo_learn, stl10: Path) -> None:
    cfg = make_cfg("stl10", stl10, [pipeline(64)])
    loaders = {b: make_pretrain_dataloader(cfg, 4, backend=b) for b in ("solo-learn", "builtin")}
    batches = {}
    for backend, loader in loaders.items():
        seeded(3)
        batches[backend] = next(iter(loader))
    (i1, v1, t1), (i2, v2, t2) = batches.values()
    assert torch.equal(i1, i2) and torch.equal(t1, t2)
    assert all(torch.equal(a, b) for a, b in zip(v1, v2, strict=True))
    for crop in (None, 64):
        solo_loaders = make_classification_dataloaders(cfg, 5, crop, backend="solo-learn")
        builtin_loaders = make_classification_dataloaders(cfg, 5, crop, backend="builtin")
        for theirs, ours in zip(solo_loaders, builtin_loaders, strict=True):
            seeded(4)
            x1, y1 = next(iter(theirs))
            seeded(4)
            x2, y2 = next(iter(ours))
            assert torch.allclose(x1, x2, atol=1e-6) and torch.equal(y1, y2)


@pytest.mark.solo
def test_fraction_selects_the_images_solo_learn_selects(solo_learn, tmp_path: Path) -> None:
    tree = write_image_folder(tmp_path / "tree", ["a", "b", "c", "d"], 5, (20, 20))
    cfg = make_cfg("custom", tree, [pipeline(16)], fraction=0.5)
    theirs = solo_learn.prepare_datasets("custom", None, tree, data_fraction=0.5, download=False)
    for backend in ("solo-learn", "builtin"):
        dataset = make_pretrain_dataloader(cfg, 2, backend=backend).dataset
        samples = dataset.samples if backend == "solo-learn" else dataset.dataset.samples
        assert samples == theirs.samples
