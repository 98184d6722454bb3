"""Tiny stand-in datasets written in the real on-disk formats, for tests of the real readers.

CIFAR-10/100 as torchvision's python pickles, STL10 as its ``stl10_binary`` files, image-folder
trees and flat folders of PNGs. torchvision's CIFAR/STL10 readers check files against the official
checksums; :func:`trust_checksums` points a reader class at the stand-in files' own checksums
(the files are then verified exactly as real ones would be).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torchvision.datasets import CIFAR10, CIFAR100, STL10

STL10_CLASSES = [
    "airplane",
    "bird",
    "car",
    "cat",
    "deer",
    "dog",
    "horse",
    "monkey",
    "ship",
    "truck",
]


@dataclass(frozen=True)
class StandIn:
    """A written stand-in dataset: the root to configure, and each data file's MD5."""

    root: Path
    checksums: dict[str, str]


def random_images(rng: np.random.Generator, count: int, height: int, width: int) -> np.ndarray:
    """``count`` RGB uint8 images (count, height, width, 3): smooth colour ramps plus noise."""
    ramp = np.linspace(0, 1, width)[None, None, :, None] * rng.uniform(0, 255, (count, 1, 1, 3))
    noise = rng.integers(0, 96, (count, height, width, 3))
    return np.clip(ramp + noise, 0, 255).astype(np.uint8)


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _pickle(path: Path, content: dict) -> None:
    with open(path, "wb") as file:
        pickle.dump(content, file, protocol=2)


def _cifar_rows(images: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072) rows of R, G, B planes: CIFAR's storage."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


def write_cifar(
    root: Path, reader: type[CIFAR10], train_per_file: int, num_test: int, seed: int = 0
) -> StandIn:
    """CIFAR-10 (``reader=CIFAR10``) or CIFAR-100 under ``root/<reader.base_folder>/``.

    Labels cycle through the classes across the files.
    """
    rng = np.random.default_rng(seed)
    base = root / reader.base_folder
    base.mkdir(parents=True)
    is_100 = issubclass(reader, CIFAR100)
    num_classes = 100 if is_100 else 10
    counts = [(name, train_per_file) for name, _ in reader.train_list]
    counts += [(name, num_test) for name, _ in reader.test_list]
    first_label = 0
    for name, count in counts:
        images = random_images(rng, count, 32, 32)
        labels = [(first_label + i) % num_classes for i in range(count)]
        first_label += count
        content = {
            "batch_label": f"stand-in {name}",
            "data": _cifar_rows(images),
            "filenames": [f"{name}_{i}.png" for i in range(count)],
        }
        if is_100:
            content |= {"fine_labels": labels, "coarse_labels": [label // 5 for label in labels]}
        else:
            content["labels"] = labels
        _pickle(base / name, content)
    names = [f"class_{i}" for i in range(num_classes)]
    meta = (
        {"fine_label_names": names, "coarse_label_names": names[:20]}
        if is_100
        else {
            "label_names": names,
            "num_cases_per_batch": train_per_file,
            "num_vis": 3072,
        }
    )
    _pickle(base / reader.meta["filename"], meta)
    return StandIn(root, {path.name: _md5(path) for path in base.iterdir()})


def write_stl10(
    root: Path, num_train: int, num_unlabeled: int, num_test: int, seed: int = 0
) -> StandIn:
    """STL10's ``stl10_binary/`` files: images stored channel by channel, column-major, labels
    1..10 one byte each, as in the official binaries."""
    rng = np.random.default_rng(seed)
    base = root / STL10.base_folder
    base.mkdir(parents=True)

    def write_images(name: str, count: int) -> None:
        images = random_images(rng, count, 96, 96)  # (N, H, W, C)
        (base / name).write_bytes(images.transpose(0, 3, 2, 1).tobytes())  # (N, C, W, H)

    for prefix, count in (("train", num_train), ("test", num_test)):
        write_images(f"{prefix}_X.bin", count)
        labels = (np.arange(count) % 10 + 1).astype(np.uint8)
        (base / f"{prefix}_y.bin").write_bytes(labels.tobytes())
    write_images("unlabeled_X.bin", num_unlabeled)
    (base / "class_names.txt").write_text("\n".join(STL10_CLASSES) + "\n")
    return StandIn(root, {path.name: _md5(path) for path in base.iterdir()})


def trust_checksums(monkeypatch: pytest.MonkeyPatch, reader: type, standin: StandIn) -> None:
    """Make torchvision's ``reader`` (CIFAR10, CIFAR100, STL10) expect ``standin``'s checksums."""
    for attribute in ("train_list", "test_list"):
        files = [[name, standin.checksums[name]] for name, _ in getattr(reader, attribute)]
        monkeypatch.setattr(reader, attribute, files)
    if reader is not STL10:
        meta = dict(reader.meta, md5=standin.checksums[reader.meta["filename"]])
        monkeypatch.setattr(reader, "meta", meta)


def write_image_folder(
    root: Path, classes: list[str], per_class: int, size: tuple[int, int], seed: int = 0
) -> Path:
    """``root/<class>/<i>.png`` RGB images of ``size`` (width, height); returns ``root``."""
    rng = np.random.default_rng(seed)
    for name in classes:
        write_flat_images(root / name, per_class, size, int(rng.integers(1 << 30)))
    return root


def write_flat_images(root: Path, count: int, size: tuple[int, int], seed: int = 0) -> Path:
    """``root/<i>.png``: ``count`` RGB images of ``size`` (width, height); returns ``root``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    width, height = size
    for index, pixels in enumerate(random_images(rng, count, height, width)):
        Image.fromarray(pixels).save(root / f"{index:03d}.png")
    return root
