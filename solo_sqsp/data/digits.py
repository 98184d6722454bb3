"""The embedded dataset ``digits``: scikit-learn's handwritten digits, rendered with nuisances.

The 1,797 8x8 digits, split 80/20 by source image, rendered at 16x16 RGB (``DigitsRendering``)
from one seeded generator, cached as one ``.npz``; the datasets behave like torchvision's CIFAR.
Rendering choices and measured floors: docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from omegaconf import DictConfig
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from solo_sqsp.config import omegaconf_select
from solo_sqsp.data.datasets import (
    DatasetBuilder,
    Normalization,
    Split,
    Transform,
    register_dataset,
)
from solo_sqsp.data.errors import DataConfigError
from solo_sqsp.data.formats import is_unset

CACHE_ENV = "SOLO_SQSP_CACHE"
CACHE_FORMAT = 1
SOURCE_LEVELS = 16  # load_digits pixel values run 0..16
LUMINANCE = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights
NUM_CLASSES = 10
SPLIT_ARRAYS = ("images", "targets", "sources")


@dataclass(frozen=True)
class DigitsRendering:
    """How the source digits become images; every field enters the cache file's name."""

    resolution: int = 16
    digit_size: tuple[int, int] = (11, 14)
    """Inclusive range of the rendered digit's side in pixels."""
    min_luminance_gap: float = 0.3
    noise_std: float = 0.03
    train_renders: int = 3
    val_renders: int = 2
    val_fraction: float = 0.2
    seed: int = 0

    def fingerprint(self) -> str:
        """Short hash of the fields and the cache format (names the cache file)."""
        text = json.dumps([CACHE_FORMAT, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class DigitsSplit:
    """Rendered images ``(N, R, R, 3)`` uint8, class ``targets`` and the ``sources`` they came
    from (index into ``load_digits``)."""

    images: np.ndarray
    targets: np.ndarray
    sources: np.ndarray


@dataclass(frozen=True)
class EmbeddedDigits:
    """Both splits of one rendering."""

    train: DigitsSplit
    val: DigitsSplit

    def split(self, split: Split) -> DigitsSplit:
        """``pretrain`` and ``train`` read the training split, ``val`` the validation split."""
        return self.val if split == "val" else self.train


def _resize_matrix(source: int, target: int) -> np.ndarray:
    """``(target, source)`` linear-interpolation weights with pixel centres aligned (half-pixel
    convention, edges clamped): ``M @ image @ M.T`` resizes a square image."""
    centres = (np.arange(target) + 0.5) * source / target - 0.5
    centres = np.clip(centres, 0, source - 1)
    left = np.floor(centres).astype(int)
    right = np.minimum(left + 1, source - 1)
    frac = centres - left
    matrix = np.zeros((target, source))
    matrix[np.arange(target), left] += 1 - frac
    matrix[np.arange(target), right] += frac
    return matrix


def _contrasting_colours(rng: np.random.Generator, count: int, min_gap: float) -> np.ndarray:
    """``(count, 2, 3)`` foreground/background RGB pairs in [0, 1] whose luminances differ by more
    than ``min_gap`` (rejection sampling, one batch of candidates at a time)."""
    pairs = np.empty((0, 2, 3))
    while len(pairs) < count:
        candidates = rng.random((2 * count, 2, 3))
        luminance = candidates @ LUMINANCE
        keep = np.abs(luminance[:, 0] - luminance[:, 1]) > min_gap
        pairs = np.concatenate([pairs, candidates[keep]])
    return pairs[:count]


def render_digits(
    sources: np.ndarray, renders: int, rendering: DigitsRendering, rng: np.random.Generator
) -> np.ndarray:
    """``renders`` images of each 8x8 source digit (values 0..16), source-major order:
    ``(len(sources) * renders, R, R, 3)`` uint8."""
    digits = np.repeat(sources.astype(np.float64) / SOURCE_LEVELS, renders, axis=0)
    count, resolution = len(digits), rendering.resolution
    low, high = rendering.digit_size
    if not 1 <= low <= high <= resolution:
        raise ValueError(f"digit_size {rendering.digit_size} must lie within 1..{resolution}")
    sizes = rng.integers(low, high + 1, size=count)
    offsets = rng.integers(0, resolution - sizes[:, None] + 1, size=(count, 2))
    colours = _contrasting_colours(rng, count, rendering.min_luminance_gap)
    noise = rng.normal(0.0, rendering.noise_std, size=(count, resolution, resolution, 3))
    alpha = np.zeros((count, resolution, resolution))
    for size in range(low, high + 1):
        chosen = np.flatnonzero(sizes == size)
        matrix = _resize_matrix(digits.shape[1], size)
        scaled = np.clip(matrix @ digits[chosen] @ matrix.T, 0, 1)
        for index, glyph in zip(chosen, scaled, strict=True):
            top, left = offsets[index]
            alpha[index, top : top + size, left : left + size] = glyph
    foreground, background = colours[:, None, None, 0], colours[:, None, None, 1]
    images = background + alpha[..., None] * (foreground - background) + noise
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def render_embedded_digits(rendering: DigitsRendering = DigitsRendering()) -> EmbeddedDigits:
    """Split ``load_digits`` by source (stratified) and render both splits; deterministic."""
    bunch = load_digits()
    indices = np.arange(len(bunch.target))
    train_sources, val_sources = train_test_split(
        indices,
        test_size=rendering.val_fraction,
        stratify=bunch.target,
        random_state=rendering.seed,
    )
    rng = np.random.default_rng(rendering.seed)
    splits = []
    for sources, renders in (
        (np.sort(train_sources), rendering.train_renders),
        (np.sort(val_sources), rendering.val_renders),
    ):
        images = render_digits(bunch.images[sources], renders, rendering, rng)
        repeated = np.repeat(sources, renders)
        splits.append(DigitsSplit(images, bunch.target[repeated].astype(np.int64), repeated))
    return EmbeddedDigits(*splits)


def default_cache_dir() -> Path:
    """``$SOLO_SQSP_CACHE`` when set, else ``~/.cache/solo_sqsp``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "solo_sqsp").expanduser()


def cache_file(cache_dir: str | Path, rendering: DigitsRendering = DigitsRendering()) -> Path:
    """Where ``rendering`` is cached inside ``cache_dir``."""
    return Path(cache_dir).expanduser() / f"digits-{rendering.fingerprint()}.npz"


def _read_cache(file: Path, rendering: DigitsRendering) -> EmbeddedDigits | None:
    """The cached splits, or None when the file is missing, unreadable or of another rendering."""
    try:
        with np.load(file, allow_pickle=False) as stored:
            if str(stored["fingerprint"]) != rendering.fingerprint():
                return None
            return EmbeddedDigits(
                *(
                    DigitsSplit(*(stored[f"{split}_{name}"] for name in SPLIT_ARRAYS))
                    for split in ("train", "val")
                )
            )
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def _write_cache(file: Path, digits: EmbeddedDigits, rendering: DigitsRendering) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    arrays: dict[str, Any] = {"fingerprint": np.array(rendering.fingerprint())}
    for split in ("train", "val"):
        for name in SPLIT_ARRAYS:
            arrays[f"{split}_{name}"] = getattr(getattr(digits, split), name)
    file.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{file.name}.", dir=file.parent)
    try:
        os.fchmod(descriptor, 0o644)
        with os.fdopen(descriptor, "wb") as stream:
            np.savez_compressed(stream, **arrays)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, file)
    finally:
        Path(temporary).unlink(missing_ok=True)


def load_embedded_digits(
    cache_dir: str | Path | None = None, rendering: DigitsRendering = DigitsRendering()
) -> EmbeddedDigits:
    """The rendered splits from the cache in ``cache_dir`` (default :func:`default_cache_dir`),
    rendered and cached first when absent or unreadable (OSError when the folder is not
    writable)."""
    file = cache_file(default_cache_dir() if cache_dir is None else cache_dir, rendering)
    digits = _read_cache(file, rendering)
    if digits is None:
        digits = render_embedded_digits(rendering)
        _write_cache(file, digits, rendering)
    return digits


class DigitsDataset(Dataset):
    """One rendered split as ``(transform(PIL image), target)`` items, stored like torchvision's
    CIFAR (``data`` uint8 ``N x H x W x 3``, ``targets`` list of int) so ``data.fraction`` and the
    CIFAR pipelines apply."""

    classes: ClassVar[list[str]] = [str(digit) for digit in range(NUM_CLASSES)]

    def __init__(self, split: DigitsSplit, transform: Transform | None = None) -> None:
        self.data = split.images
        self.targets = split.targets.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        image = Image.fromarray(self.data[index])
        return (image if self.transform is None else self.transform(image)), self.targets[index]


class DigitsBuilder(DatasetBuilder):
    """``data.dataset: digits``: nothing to download; ``data.train_path`` (optional) is the cache
    folder. Both splits are always there, so pretraining always has an online validation."""

    num_classes = NUM_CLASSES
    # Per-channel statistics of the default rendering's training split (colours are uniform).
    pretrain_normalization = Normalization((0.494, 0.498, 0.497), (0.276, 0.291, 0.269))
    eval_normalization = pretrain_normalization
    eval_crop_size = DigitsRendering.resolution
    eval_resize = "square"
    # Linear evaluation trains on crops of half the image or more and never flips (a flipped 2
    # is no 2), as the pretraining views do (scripts/pretrain/digits/augmentations/digits.yaml).
    eval_train_crop_scale = (0.5, 1.0)
    eval_train_flip = False

    def __init__(self, rendering: DigitsRendering = DigitsRendering()) -> None:
        self.rendering = rendering

    def location(self, cfg: DictConfig, split: Split) -> tuple[str, Any]:
        path = omegaconf_select(cfg, "data.train_path")
        if is_unset(path):
            return CACHE_ENV, str(default_cache_dir())
        return "data.train_path", path

    def has_online_val(self, cfg: DictConfig) -> bool:
        return True

    def _load(self, cfg: DictConfig, split: Split) -> EmbeddedDigits:
        key, folder = self.location(cfg, split)
        try:
            return load_embedded_digits(folder, self.rendering)
        except OSError as error:
            raise DataConfigError(
                f"{key}={str(folder)!r}: cannot write the rendered digits cache there ({error}). "
                f"Fix: point {CACHE_ENV} or data.train_path at a writable folder"
            ) from error

    def check(self, cfg: DictConfig, split: Split) -> None:
        self._load(cfg, split)

    def open(self, cfg: DictConfig, split: Split, transform: Transform) -> Dataset:
        return DigitsDataset(self._load(cfg, split).split(split), transform)


register_dataset("digits", DigitsBuilder())
