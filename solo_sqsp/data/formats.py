"""On-disk dataset formats: quick checks that a folder holds what its torchvision reader expects.

Each check looks only at folder listings, file sizes and (for CIFAR's small files) the checksums
torchvision verifies, so it finishes in seconds, before any model is built. A failed check raises
:class:`DataConfigError` naming the config key and path, what was expected there, and the fix.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

from torchvision.datasets import CIFAR10, STL10
from torchvision.datasets.folder import IMG_EXTENSIONS, has_file_allowed_extension
from torchvision.datasets.utils import check_integrity

from solo_sqsp.data.errors import DataConfigError

STL10_IMAGE_BYTES = 3 * 96 * 96
SPLIT_FOLDER_NAMES = frozenset({"train", "val", "validation", "test"})
_MAX_LISTED = 5


def fail(key: str, path: object, problem: str, expected: str, fix: str) -> NoReturn:
    """Raise the package's one-message error: the key and the path it names, what is wrong there,
    what was expected, the fix."""
    shown = None if path is None else str(path)
    raise DataConfigError(f"{key}={shown!r}: {problem}. Expected {expected}. Fix: {fix}")


def _listing(names: Iterable[str]) -> str:
    names = sorted(names)
    more = f" (and {len(names) - _MAX_LISTED} more)" if len(names) > _MAX_LISTED else ""
    return ", ".join(names[:_MAX_LISTED]) + more


def is_image_file(name: str) -> bool:
    """Whether torchvision's ImageFolder would read ``name`` (by extension, any case)."""
    return has_file_allowed_extension(name, IMG_EXTENSIONS)


def is_unset(path: object) -> bool:
    """Whether a config path value means "not given" (None, empty, Hydra's ``???``)."""
    return path is None or str(path) in ("", "None", "???")


def shown_path(path: str | Path | None) -> Path:
    """``path`` for messages and commands; a placeholder when it is not set."""
    return Path("<data folder>") if is_unset(path) else Path(str(path)).expanduser()


def require_folder(key: str, path: str | Path | None, expected: str, fix: str) -> Path:
    """``path`` as a Path, after checking it is set, exists, is a folder and is not empty."""
    if is_unset(path):
        fail(key, path, "is not set", expected, f"set {key} to such a folder; to get one: {fix}")
    folder = Path(path).expanduser()
    if not folder.exists():
        fail(key, folder, "does not exist", expected, fix)
    if not folder.is_dir():
        fail(key, folder, "is a file, not a folder", expected, fix)
    if next(os.scandir(folder), None) is None:
        fail(key, folder, "is an empty folder", expected, fix)
    return folder


def cifar_download_fix(key: str, root: Path, reader: type[CIFAR10]) -> str:
    """How to get CIFAR-10/100 in torchvision's layout into ``root``."""
    return (
        f'download {reader.__name__} with `python -c "import torchvision; '
        f"torchvision.datasets.{reader.__name__}('{root}', download=True)\"` on a machine with "
        f"internet and copy {root} here, or set {key}=<the folder that holds {reader.base_folder}>"
    )


def check_cifar(key: str, path: str | Path | None, reader: type[CIFAR10]) -> None:
    """``path`` holds ``<reader.base_folder>/`` with every file torchvision's reader checksums.

    ``reader`` is ``torchvision.datasets.CIFAR10`` or ``CIFAR100``; its file lists and checksums
    are the ones the reader verifies when it opens the data (``download=False``).
    """
    root = shown_path(path)
    fix = cifar_download_fix(key, root, reader)
    files = [*reader.train_list, *reader.test_list, [reader.meta["filename"], reader.meta["md5"]]]
    expected = (
        f"{root}/{reader.base_folder}/ holding {_listing(name for name, _ in files)} "
        f"(torchvision's {reader.__name__} layout)"
    )
    root = require_folder(key, path, expected, fix)
    base = root / reader.base_folder
    if not base.is_dir():
        if root.name == reader.base_folder or (root / files[0][0]).is_file():
            fail(
                key,
                root,
                f"this is the {reader.base_folder} folder itself, not the folder that holds it",
                expected,
                f"set {key}={root.parent}",
            )
        if (root / reader.filename).is_file():
            fail(
                key,
                root,
                f"holds the archive {reader.filename} but not its extracted {reader.base_folder}/",
                expected,
                f"extract it with `tar -xzf {root / reader.filename} -C {root}`",
            )
        fail(key, root, f"has no {reader.base_folder}/ folder inside", expected, fix)
    missing = [name for name, _ in files if not (base / name).is_file()]
    if missing:
        fail(key, root, f"{base} lacks {_listing(missing)}", expected, fix)
    corrupt = [name for name, md5 in files if not check_integrity(base / name, md5)]
    if corrupt:
        fail(
            key,
            root,
            f"in {base}, {_listing(corrupt)} do not match torchvision's checksums "
            "(truncated or corrupt download?)",
            expected,
            f"delete {base} and download again: {fix}",
        )


def check_stl10(key: str, path: str | Path | None) -> None:
    """``path`` holds ``stl10_binary/`` with torchvision's five STL10 files, sizes consistent.

    Sizes, not checksums: ``unlabeled_X.bin`` is 2.7 GB. torchvision verifies the checksums when
    it opens the data; the loaders turn that failure into a :class:`DataConfigError` too.
    """
    root = shown_path(path)
    fix = (
        'download STL10 with `python -c "import torchvision; torchvision.datasets.STL10('
        f"'{root}', split='train+unlabeled', download=True)\"` on a machine with internet and "
        f"copy {root} here, or set {key}=<the folder that holds {STL10.base_folder}>"
    )
    names = [name for name, _ in (*STL10.train_list, *STL10.test_list)]
    expected = f"{root}/{STL10.base_folder}/ holding {', '.join(names)} (torchvision's layout)"
    root = require_folder(key, path, expected, fix)
    base = root / STL10.base_folder
    if not base.is_dir():
        if root.name == STL10.base_folder or (root / names[0]).is_file():
            fail(
                key,
                root,
                f"this is the {STL10.base_folder} folder itself, not the folder that holds it",
                expected,
                f"set {key}={root.parent}",
            )
        if (root / STL10.filename).is_file():
            fail(
                key,
                root,
                f"holds the archive {STL10.filename} but not its extracted {STL10.base_folder}/",
                expected,
                f"extract it with `tar -xzf {root / STL10.filename} -C {root}`",
            )
        fail(key, root, f"has no {STL10.base_folder}/ folder inside", expected, fix)
    missing = [name for name in names if not (base / name).is_file()]
    if missing:
        fail(key, root, f"{base} lacks {_listing(missing)}", expected, fix)
    redownload = f"delete {base} and download again: {fix}"
    counts = {}
    for name in names:
        size = (base / name).stat().st_size
        if name.endswith("_X.bin"):
            if size == 0 or size % STL10_IMAGE_BYTES:
                fail(
                    key,
                    root,
                    f"{base / name} is {size} bytes, not a whole number of 3x96x96 images "
                    f"({STL10_IMAGE_BYTES} bytes each): truncated",
                    expected,
                    redownload,
                )
            counts[name] = size // STL10_IMAGE_BYTES
    for images, labels in (("train_X.bin", "train_y.bin"), ("test_X.bin", "test_y.bin")):
        num_labels = (base / labels).stat().st_size
        if num_labels != counts[images]:
            fail(
                key,
                root,
                f"{base / labels} holds {num_labels} labels "
                f"for the {counts[images]} images of {images}",
                expected,
                redownload,
            )


def _holds_image(folder: str) -> bool:
    """Whether ``folder`` or a folder below it holds an image file (stops at the first one)."""
    subfolders = []
    for entry in os.scandir(folder):
        if entry.is_dir():
            subfolders.append(entry.path)
        elif is_image_file(entry.name):
            return True
    return any(_holds_image(subfolder) for subfolder in subfolders)


def check_image_folder(
    key: str,
    path: str | Path | None,
    dataset: str,
    how_to_get: str,
    num_classes: int | None = None,
    unlabeled_option: bool = False,
) -> None:
    """``path`` is an ImageFolder tree: ``<path>/<class>/<image>``, every class with an image.

    ``num_classes`` (when known for the dataset) must match the number of class folders.
    ``unlabeled_option`` says that ``data.no_labels=True`` would accept a flat folder instead.
    """
    root = shown_path(path)
    expected = (
        f"an image-folder tree {root}/<class name>/<image> with one sub-folder per class"
        + (f" ({num_classes} classes for {dataset})" if num_classes else "")
        + f", images with extensions {', '.join(IMG_EXTENSIONS)}"
    )
    root = require_folder(key, path, expected, how_to_get)
    # torchvision's ImageFolder takes every sub-folder (hidden ones too) as a class
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    if not classes:
        flat_images = [entry.name for entry in os.scandir(root) if is_image_file(entry.name)]
        if flat_images and unlabeled_option:
            fix = (
                "set data.no_labels=True to pretrain on a flat folder of unlabeled images, or "
                f"move the images into class sub-folders {root}/<class name>/"
            )
        elif flat_images:
            fix = f"move the images into class sub-folders {root}/<class name>/"
        else:
            fix = how_to_get
        found = f"holds {len(flat_images)} images but" if flat_images else "has"
        fail(key, root, f"{found} no class sub-folders", expected, fix)
    if num_classes != len(classes) and {c.lower() for c in classes} <= SPLIT_FOLDER_NAMES:
        fail(
            key,
            root,
            f"holds the split folders {', '.join(classes)}, not class folders",
            expected,
            f"point {key} at one split, e.g. {key}={root / classes[0]}",
        )
    empty = [name for name in classes if not _holds_image(os.path.join(root, name))]
    if empty:
        fail(
            key,
            root,
            f"class folders without any image: {_listing(empty)}",
            expected,
            "add images to those folders or remove them (ImageFolder refuses empty classes)",
        )
    if num_classes is not None and len(classes) != num_classes:
        fail(
            key,
            root,
            f"has {len(classes)} class folders ({_listing(classes)})",
            expected,
            how_to_get,
        )


def check_flat_image_folder(key: str, path: str | Path | None) -> None:
    """``path`` holds image files directly and nothing else (``custom`` with ``data.no_labels``).

    Nothing else: solo-learn's ``CustomDatasetWithoutLabels`` opens every entry of the folder as an
    image, and both backends accept the same folders.
    """
    root = shown_path(path)
    expected = f"a folder holding only image files {root}/<image> ({', '.join(IMG_EXTENSIONS)})"
    fix = f"put the unlabeled images directly into {root}, or set {key}=<such a folder>"
    root = require_folder(key, path, expected, fix)
    entries = list(os.scandir(root))
    images = [e.name for e in entries if e.is_file() and is_image_file(e.name)]
    if not images:
        if any(e.is_dir() and _holds_image(e.path) for e in entries):
            fix = "set data.no_labels=False to read the class sub-folders as an ImageFolder tree"
        fail(key, root, "holds no image files directly", expected, fix)
    others = [e.name for e in entries if not (e.is_file() and is_image_file(e.name))]
    if others:
        fail(
            key,
            root,
            f"holds entries that are not image files: {_listing(others)}",
            expected,
            f"move them out of {root}",
        )
