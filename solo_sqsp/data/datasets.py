"""The dataset registry: for each ``data.dataset`` name, how its files are checked and opened.

The entries follow solo-learn's ``prepare_datasets`` (``solo/data/pretrain_dataloader.py`` and
``classification_dataloader.py``): CIFAR-10/100 and STL10 through torchvision's readers with
``data.train_path`` as their root, ImageNet, ImageNet-100 and ``custom`` as image-folder trees, and
``custom`` with ``data.no_labels`` as a flat folder of images. STL10 pretrains on
``train+unlabeled`` and evaluates on ``train``/``test``, as in the paper's reference code.
Normalisation statistics and linear-eval crop sizes are solo-learn's.

A new dataset (the embedded ``digits``) is a :class:`DatasetBuilder` added with
:func:`register_dataset`.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from omegaconf import DictConfig
from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets import CIFAR10, CIFAR100, STL10, ImageFolder

from solo_sqsp.config import omegaconf_select
from solo_sqsp.data.errors import DataConfigError
from solo_sqsp.data.formats import (
    check_cifar,
    check_flat_image_folder,
    check_image_folder,
    check_stl10,
    is_unset,
)

Split = Literal["pretrain", "train", "val"]
"""``pretrain``: the self-supervised training split; ``train``/``val``: labelled evaluation."""
Transform = Callable[[Image.Image], Any]
EvalResize = Literal["square", "shorter_side"]


@dataclass(frozen=True)
class Normalization:
    """Per-channel mean and standard deviation of ``transforms.Normalize``."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


# timm's IMAGENET_DEFAULT_MEAN/STD, solo-learn's default for ImageNet and custom data.
IMAGENET_NORMALIZATION = Normalization((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# solo-learn's linear-eval statistics, shared by CIFAR-10 and CIFAR-100.
CIFAR_EVAL_NORMALIZATION = Normalization((0.4914, 0.4822, 0.4465), (0.247, 0.243, 0.261))


class DatasetBuilder(ABC):
    """A registry entry: how one dataset's files are checked and opened, and its statistics.

    ``open`` returns a dataset of ``(PIL image, int target)`` items (target -1 when unlabeled).
    To support ``data.fraction``, the dataset keeps its items in one of the layouts
    :func:`solo_sqsp.data.subsample.subsample` knows (``samples``; ``data`` with ``targets`` or
    ``labels``; ``images``).
    """

    num_classes: int | None = None
    """Known class count (checked against the files); None when read from the files."""
    pretrain_normalization: Normalization | None = None
    """None: each augmentation pipeline's ``mean``/``std`` keys, ImageNet's by default."""
    eval_normalization: Normalization = IMAGENET_NORMALIZATION
    eval_crop_size: int = 224
    eval_resize: EvalResize = "shorter_side"
    """How evaluation images reach the crop size: ``square`` resizes to crop x crop;
    ``shorter_side`` resizes the shorter side to crop * 256 / 224, then centre-crops."""
    solo_learn_native: bool = False
    """solo-learn's own data pieces know this dataset by its name."""
    eval_train_crop_scale: tuple[float, float] = (0.08, 1.0)
    eval_train_flip: bool = True
    """Linear evaluation's training augmentation: random resized crop scale and flip."""

    def location(self, cfg: DictConfig, split: Split) -> tuple[str, Any]:
        """The config key and value naming where ``split`` lives."""
        if split == "val":
            return "data.val_path", omegaconf_select(cfg, "data.val_path")
        return "data.train_path", omegaconf_select(cfg, "data.train_path")

    def has_online_val(self, cfg: DictConfig) -> bool:
        """Whether pretraining evaluates on a validation split (solo-learn's main_pretrain)."""
        return not is_unset(self.location(cfg, "val")[1])

    @abstractmethod
    def check(self, cfg: DictConfig, split: Split) -> None:
        """Raise :class:`DataConfigError` unless ``split``'s files are in place (seconds)."""

    @abstractmethod
    def open(self, cfg: DictConfig, split: Split, transform: Transform) -> Dataset:
        """The ``split`` as a dataset of ``(transform(image), target)`` items."""


class _SingleRootBuilder(DatasetBuilder):
    """Datasets whose evaluation split lives in the same root as the training split."""

    def location(self, cfg: DictConfig, split: Split) -> tuple[str, Any]:
        key, path = super().location(cfg, split)
        if split == "val" and is_unset(path):
            return super().location(cfg, "train")
        return key, path


class CifarBuilder(_SingleRootBuilder):
    """CIFAR-10 or CIFAR-100 in torchvision's python-pickle layout under ``data.train_path``."""

    solo_learn_native = True
    eval_normalization = CIFAR_EVAL_NORMALIZATION
    eval_crop_size = 32
    eval_resize = "square"

    def __init__(self, reader: type[CIFAR10], pretrain_normalization: Normalization) -> None:
        self.reader = reader
        self.num_classes = 100 if issubclass(reader, CIFAR100) else 10
        self.pretrain_normalization = pretrain_normalization

    def check(self, cfg: DictConfig, split: Split) -> None:
        check_cifar(*self.location(cfg, split), self.reader)

    def open(self, cfg: DictConfig, split: Split, transform: Transform) -> Dataset:
        key, root = self.location(cfg, split)
        with reading(key, root):
            return self.reader(root, train=split != "val", transform=transform, download=False)


class Stl10Builder(_SingleRootBuilder):
    """STL10 in torchvision's ``stl10_binary`` layout; pretraining reads ``train+unlabeled``."""

    solo_learn_native = True
    num_classes = 10
    pretrain_normalization = Normalization((0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261))
    eval_normalization = pretrain_normalization
    eval_crop_size = 96
    eval_resize = "square"
    SPLITS: ClassVar[dict[Split, str]] = {
        "pretrain": "train+unlabeled",
        "train": "train",
        "val": "test",
    }

    def check(self, cfg: DictConfig, split: Split) -> None:
        check_stl10(*self.location(cfg, split))

    def open(self, cfg: DictConfig, split: Split, transform: Transform) -> Dataset:
        key, root = self.location(cfg, split)
        with reading(key, root):
            return STL10(root, split=self.SPLITS[split], transform=transform, download=False)


class ImageFolderBuilder(DatasetBuilder):
    """An image-folder tree ``<path>/<class>/<image>`` per split (ImageNet, ImageNet-100)."""

    solo_learn_native = True
    pretrain_normalization = IMAGENET_NORMALIZATION

    def __init__(self, num_classes: int | None, how_to_get: str) -> None:
        self.num_classes = num_classes
        self.how_to_get = how_to_get

    def check(self, cfg: DictConfig, split: Split) -> None:
        key, path = self.location(cfg, split)
        check_image_folder(key, path, cfg.data.dataset, self.how_to_get, self.num_classes)

    def open(self, cfg: DictConfig, split: Split, transform: Transform) -> Dataset:
        key, root = self.location(cfg, split)
        with reading(key, root):
            return ImageFolder(root, transform=transform)


class CustomBuilder(ImageFolderBuilder):
    """``custom``: an image-folder tree; for pretraining with ``data.no_labels``, a flat folder."""

    pretrain_normalization = None

    def __init__(self) -> None:
        super().__init__(
            num_classes=None,
            how_to_get="put your images into <path>/<class name>/ sub-folders",
        )

    @staticmethod
    def _unlabeled(cfg: DictConfig, split: Split) -> bool:
        return split == "pretrain" and bool(omegaconf_select(cfg, "data.no_labels", False))

    def has_online_val(self, cfg: DictConfig) -> bool:
        return super().has_online_val(cfg) and not self._unlabeled(cfg, "pretrain")

    def check(self, cfg: DictConfig, split: Split) -> None:
        key, path = self.location(cfg, split)
        if self._unlabeled(cfg, split):
            check_flat_image_folder(key, path)
        else:
            check_image_folder(
                key, path, "custom", self.how_to_get, unlabeled_option=split == "pretrain"
            )

    def open(self, cfg: DictConfig, split: Split, transform: Transform) -> Dataset:
        if not self._unlabeled(cfg, split):
            return super().open(cfg, split, transform)
        key, root = self.location(cfg, split)
        with reading(key, root):
            return UnlabeledImages(root, transform)


class UnlabeledImages(Dataset):
    """The image files directly inside one folder, sorted by name, each with target -1."""

    def __init__(self, root: str | Path, transform: Transform | None = None) -> None:
        self.root = Path(root).expanduser()
        self.transform = transform
        self.images = sorted(os.listdir(self.root))

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Any, int]:
        with Image.open(self.root / self.images[index]) as image:
            image = image.convert("RGB")
        return (image if self.transform is None else self.transform(image)), -1


class IndexedDataset(Dataset):
    """``(index, *item)`` for each item of ``dataset``: the layout solo-learn's methods expect."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Any, ...]:
        return (index, *self.dataset[index])


@contextmanager
def reading(key: str, path: Any) -> Iterator[None]:
    """Turn a reader's failure to open checked files (checksum, I/O) into a DataConfigError."""
    try:
        yield
    except (RuntimeError, OSError) as error:
        raise DataConfigError(
            f"{key}={str(path)!r}: the files are in place but torchvision could not read them "
            f"({error}). Fix: delete the dataset folder and download it again, or set {key}=..."
        ) from error


def _imagenet_source(name: str) -> str:
    source = (
        "obtain ILSVRC-2012 from image-net.org (no public download URL) and arrange it as "
        "<path>/<wnid>/<image>, sorting the flat validation images into class folders"
    )
    if name == "imagenet100":
        source += (
            "; build ImageNet-100 from it with solo-learn's scripts/utils/make_imagenet100.py "
            "(the 100 classes of CMC, Tian et al. 2020)"
        )
    return source


DATASETS: dict[str, DatasetBuilder] = {
    "cifar10": CifarBuilder(
        CIFAR10, Normalization((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
    ),
    "cifar100": CifarBuilder(
        CIFAR100, Normalization((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762))
    ),
    "stl10": Stl10Builder(),
    "imagenet100": ImageFolderBuilder(100, _imagenet_source("imagenet100")),
    "imagenet": ImageFolderBuilder(1000, _imagenet_source("imagenet")),
    "custom": CustomBuilder(),
}
"""``data.dataset`` name -> builder. Add entries with :func:`register_dataset`."""


def register_dataset(name: str, builder: DatasetBuilder) -> None:
    """Make ``data.dataset=name`` available to the validation and the loaders."""
    if name in DATASETS:
        raise ValueError(
            f"dataset {name!r} is already registered ({type(DATASETS[name]).__name__})"
        )
    DATASETS[name] = builder


def dataset_builder(cfg: DictConfig) -> DatasetBuilder:
    """The builder registered for ``data.dataset``; DataConfigError listing the known names."""
    name = omegaconf_select(cfg, "data.dataset")
    if name not in DATASETS:
        raise DataConfigError(
            f"data.dataset={name!r} is not a known dataset. Expected one of "
            f"{', '.join(sorted(DATASETS))}. Fix: set data.dataset to one of them (custom reads "
            "any image-folder tree)"
        )
    return DATASETS[name]
