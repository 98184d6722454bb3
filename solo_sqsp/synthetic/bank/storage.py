"""The teacher bank on disk: ``size`` teacher samples drawn once, stored memory-mappable.

A bank is a directory holding

- ``bank.json``: format and version, the teacher's record (``fingerprint.teacher_record``),
  ``size``, ``seed``, ``build_batch``, image shape, feature names and widths, the count of
  samples written, ``complete``, and one CRC-32 pair (images, features) per build chunk;
- ``images.uint8``: ``(size, C, R, R)`` uint8, the generator's image clamped to [-1, 1] and
  mapped to [0, 255] (rounded), i.e. the [0, 1] image of ``SyntheticSource`` times 255;
- ``features.float16``: ``(size, sum(feature_dims))`` float16, the pooled features of the
  teacher's feature modules side by side, in ``feature_names`` order.

Building writes into ``<path>.partial/`` (files preallocated at full size) chunk by chunk: chunk
``k`` holds samples ``[k * build_batch, (k + 1) * build_batch)`` drawn by ``teacher.sample``
from a ``torch.Generator`` seeded with ``tagged_seed(seed, "build", k)``; after each chunk the
data are flushed and ``bank.json`` (with the new count) is replaced atomically, so an interrupted
build resumes from the last finished chunk. The finished directory is renamed to ``<path>``,
so a bank found at ``<path>`` is complete. Builders of the same path on one machine (DDP ranks)
serialise on ``<path>.lock`` (``flock``): the first builds, the others wait, then open it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from solo_sqsp.synthetic.bank.fingerprint import record_mismatch, teacher_record
from solo_sqsp.teachers import GeneratorTeacher
from solo_sqsp.untrusted.bounded_text import shown

logger = logging.getLogger(__name__)

BANK_FORMAT = "solo-sqsp-teacher-bank"
FORMAT_VERSION = 1
META_FILE = "bank.json"
IMAGES_FILE = "images.uint8"
FEATURES_FILE = "features.float16"
PARTIAL_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
META_KEYS = frozenset(
    (
        "teacher",
        "size",
        "seed",
        "build_batch",
        "image_shape",
        "feature_names",
        "feature_dims",
        "count",
        "complete",
        "chunk_crc32",
    )
)


MAX_META_BYTES = 64 * 2**20  # bank.json: a few KB plus 20 bytes per build chunk
MAX_SAMPLES = 2**32
MAX_IMAGE_CHANNELS = 64
MAX_IMAGE_SIDE = 4096
MAX_FEATURE_MODULES = 256
MAX_FEATURE_DIM = 2**16
MAX_NAME_CHARS = 256


class BankError(ValueError):
    """A bank that is missing, incomplete, corrupt, or made from another teacher."""


@dataclass(frozen=True)
class TeacherBank:
    """An opened bank: its ``meta`` (``bank.json``) and read-only memory maps of the samples."""

    path: Path
    meta: dict[str, Any]
    images: np.memmap
    features: np.memmap

    @property
    def size(self) -> int:
        return int(self.meta["size"])

    @property
    def feature_dims(self) -> list[int]:
        return [int(d) for d in self.meta["feature_dims"]]


def tagged_seed(seed: int, tag: str, *keys: int) -> int:
    """A 64-bit seed for stream ``tag`` at ``keys`` (NumPy ``SeedSequence`` hash), unrelated to
    the streams of other tags and of ``solo_sqsp.synthetic.stream.stream_seed``."""
    entropy = [seed, zlib.crc32(tag.encode())]
    words = np.random.SeedSequence(entropy, spawn_key=keys).generate_state(2)
    return int(words[0]) | (int(words[1]) << 32)


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Generator images (about [-1, 1]) as uint8: clamp, map to [0, 255], round."""
    return images.float().clamp(-1.0, 1.0).add(1.0).mul(127.5).round().to(torch.uint8)


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + PARTIAL_SUFFIX)


def _shapes(meta: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    size = int(meta["size"])
    return (size, *meta["image_shape"]), (size, sum(meta["feature_dims"]))


def _expected_bytes(meta: dict[str, Any]) -> dict[str, int]:
    image_shape, feature_shape = _shapes(meta)
    return {IMAGES_FILE: math.prod(image_shape), FEATURES_FILE: 2 * math.prod(feature_shape)}


def _memmaps(directory: Path, meta: dict[str, Any], mode: str) -> tuple[np.memmap, np.memmap]:
    image_shape, feature_shape = _shapes(meta)
    images = np.memmap(
        _bank_file(directory, IMAGES_FILE), dtype=np.uint8, mode=mode, shape=image_shape
    )
    features = np.memmap(
        _bank_file(directory, FEATURES_FILE), dtype=np.float16, mode=mode, shape=feature_shape
    )
    return images, features


def _write_meta(directory: Path, meta: dict[str, Any]) -> None:
    temporary = directory / (META_FILE + ".tmp")
    temporary.write_text(json.dumps(meta, indent=1), encoding="utf-8")
    os.replace(temporary, directory / META_FILE)


def _read_meta(directory: Path) -> dict[str, Any]:
    meta_path = directory / META_FILE
    rebuild = f"delete {directory} and run again to rebuild the bank"
    try:
        with open(_bank_file(directory, META_FILE), encoding="utf-8") as stream:
            text = stream.read(MAX_META_BYTES + 1)
        if len(text) > MAX_META_BYTES:
            raise BankError(f"teacher bank {meta_path} is larger than {MAX_META_BYTES} bytes")
        meta = json.loads(text)
    except FileNotFoundError as err:
        raise BankError(f"teacher bank {meta_path} is missing; {rebuild}") from err
    except (ValueError, RecursionError) as err:  # JSON and UTF-8 errors, nesting too deep
        if isinstance(err, BankError):
            raise
        raise BankError(f"teacher bank {meta_path} is corrupt ({shown(err)}); {rebuild}") from err
    if not isinstance(meta, dict) or meta.get("format") != BANK_FORMAT:
        raise BankError(f"{meta_path} is not a teacher bank description; {rebuild}")
    if meta.get("version") != FORMAT_VERSION:
        raise BankError(
            f"teacher bank {meta_path} has format version {shown(meta.get('version'))}, this "
            f"code reads version {FORMAT_VERSION}; {rebuild}"
        )
    missing = sorted(META_KEYS - set(meta))
    if missing:
        raise BankError(f"teacher bank {meta_path} lacks {missing}: it is corrupt; {rebuild}")
    wrong = _invalid_meta_keys(meta)
    if wrong:
        shown_values = ", ".join(f"{key}={shown(meta[key], 80)}" for key in wrong)
        raise BankError(
            f"teacher bank {meta_path} has invalid {shown_values}: it is corrupt; {rebuild}"
        )
    return meta


def _invalid_meta_keys(meta: dict[str, Any]) -> list[str]:
    """The keys of ``bank.json`` whose values have the wrong type or range."""

    def count(value: Any, low: int, high: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high

    size, build_batch = meta["size"], meta["build_batch"]
    valid_size = count(size, 1, MAX_SAMPLES)
    valid_batch = count(build_batch, 1, MAX_SAMPLES)
    names, dims, crcs = meta["feature_names"], meta["feature_dims"], meta["chunk_crc32"]
    checks = {
        "teacher": isinstance(meta["teacher"], dict),
        "size": valid_size,
        "seed": count(meta["seed"], -(2**63), 2**64 - 1),
        "build_batch": valid_batch,
        "image_shape": isinstance(meta["image_shape"], list)
        and len(meta["image_shape"]) == 3
        and count(meta["image_shape"][0], 1, MAX_IMAGE_CHANNELS)
        and all(count(side, 1, MAX_IMAGE_SIDE) for side in meta["image_shape"][1:]),
        "feature_names": isinstance(names, list)
        and 1 <= len(names) <= MAX_FEATURE_MODULES
        and all(isinstance(n, str) and len(n) <= MAX_NAME_CHARS for n in names),
        "feature_dims": isinstance(dims, list)
        and isinstance(names, list)
        and len(dims) == len(names)
        and all(count(d, 1, MAX_FEATURE_DIM) for d in dims),
        "count": valid_size and count(meta["count"], 0, size),
        "complete": isinstance(meta["complete"], bool),
        "chunk_crc32": isinstance(crcs, list)
        and (not (valid_size and valid_batch) or len(crcs) <= math.ceil(size / build_batch))
        and all(
            isinstance(pair, list) and len(pair) == 2 and all(count(c, 0, 2**32 - 1) for c in pair)
            for pair in crcs
        ),
    }
    return [key for key, valid in checks.items() if not valid]


def _bank_file(directory: Path, name: str) -> Path:
    """``directory / name``, refused when it is a symlink leading out of ``directory``."""
    file = directory / name
    if file.is_symlink() and file.resolve().parent != directory.resolve():
        raise BankError(
            f"teacher bank file {file} is a symlink to {shown(str(file.resolve()))}, outside "
            f"the bank; delete {directory} and run again to rebuild the bank"
        )
    return file


def _check_file_sizes(directory: Path, meta: dict[str, Any]) -> None:
    for name, expected in _expected_bytes(meta).items():
        file = _bank_file(directory, name)
        actual = file.stat().st_size if file.exists() else None
        if actual != expected:
            found = "is missing" if actual is None else f"has {actual} bytes"
            raise BankError(
                f"teacher bank file {file} {found}, expected {expected} bytes for "
                f"{meta['size']} samples: truncated or corrupt; delete {directory} and run "
                "again to rebuild the bank"
            )


def _chunk_crcs(images: np.ndarray, features: np.ndarray) -> list[int]:
    return [zlib.crc32(np.ascontiguousarray(images)), zlib.crc32(np.ascontiguousarray(features))]


def verify_checksums(bank: TeacherBank) -> None:
    """Compare every chunk with the CRC-32 recorded at build time (reads the whole bank)."""
    step = int(bank.meta["build_batch"])
    checksums = bank.meta["chunk_crc32"]
    if len(checksums) != math.ceil(bank.size / step):
        raise BankError(
            f"teacher bank {bank.path / META_FILE} lists {len(checksums)} chunk checksums for "
            f"{math.ceil(bank.size / step)} chunks: it is corrupt; delete {bank.path} and run "
            "again to rebuild the bank"
        )
    for chunk, recorded in enumerate(checksums):
        rows = slice(chunk * step, min((chunk + 1) * step, bank.size))
        if _chunk_crcs(bank.images[rows], bank.features[rows]) != recorded:
            raise BankError(
                f"teacher bank {bank.path}: samples {rows.start}..{rows.stop - 1} of "
                f"{bank.path / IMAGES_FILE} / {bank.path / FEATURES_FILE} fail their checksum: "
                f"the files are corrupt; delete {bank.path} and run again to rebuild the bank"
            )


def open_bank(
    path: str | Path, record: dict[str, Any] | None = None, verify: bool = True
) -> TeacherBank:
    """Open the complete bank at ``path`` read-only. ``record`` (``teacher_record(teacher)``):
    refuse a bank made from another teacher. ``verify``: check every chunk's CRC-32."""
    path = Path(path)
    if not path.is_dir():
        hint = (
            f" (an unfinished build is at {partial_path(path)}; run again to resume it)"
            if partial_path(path).is_dir()
            else ""
        )
        raise BankError(
            f"no teacher bank at {path}{hint}; build it with "
            "solo_sqsp.synthetic.bank.ensure_bank or method_kwargs.synthetic.source=bank"
        )
    meta = _read_meta(path)
    if not meta.get("complete") or meta.get("count") != meta.get("size"):
        raise BankError(
            f"teacher bank {path / META_FILE} records {meta.get('count')} of {meta.get('size')} "
            f"samples written; delete {path} and run again to rebuild the bank"
        )
    if record is not None:
        mismatch = record_mismatch(meta["teacher"], record)
        if mismatch is not None:
            raise BankError(
                f"teacher bank {path} was made from another teacher ({mismatch}); point "
                f"method_kwargs.synthetic.bank_path elsewhere (or leave it null for a path "
                f"named by the teacher's fingerprint), or delete {path} to rebuild it"
            )
    _check_file_sizes(path, meta)
    images, features = _memmaps(path, meta, "r")
    bank = TeacherBank(path=path, meta=meta, images=images, features=features)
    if verify:
        verify_checksums(bank)
    return bank


def _fresh_meta(
    teacher: GeneratorTeacher, record: dict[str, Any], size: int, seed: int, build_batch: int
) -> dict[str, Any]:
    return {
        "format": BANK_FORMAT,
        "version": FORMAT_VERSION,
        "teacher": record,
        "size": size,
        "seed": seed,
        "build_batch": build_batch,
        "image_shape": list(teacher.image_shape),
        "feature_names": list(teacher.feature_names),
        "feature_dims": [int(d) for d in teacher.feature_dims],
        "count": 0,
        "complete": False,
        "chunk_crc32": [],
    }


def _resumable_meta(partial: Path, fresh: dict[str, Any]) -> dict[str, Any] | None:
    """The unfinished build's meta if it builds the same bank, else None (start over)."""
    if not partial.is_dir():
        return None
    try:
        meta = _read_meta(partial)
        _check_file_sizes(partial, meta)
    except BankError as err:
        logger.warning("discarding unfinished teacher bank %s: %s", partial, err)
        return None
    same = ("teacher", "size", "seed", "build_batch", "image_shape", "feature_dims")
    if any(meta.get(key) != fresh[key] for key in same):
        logger.warning("discarding unfinished teacher bank %s: built with other settings", partial)
        return None
    return meta


def build_bank(
    path: str | Path,
    teacher: GeneratorTeacher,
    *,
    size: int,
    seed: int,
    build_batch: int = 256,
    record: dict[str, Any] | None = None,
    progress: bool = True,
    on_chunk: Callable[[int], None] | None = None,
) -> TeacherBank:
    """Draw ``size`` samples from ``teacher`` into a bank at ``path`` (see the module
    docstring), resuming an unfinished build of the same bank. ``on_chunk(count)`` runs after
    each chunk is safely written. Returns the opened bank."""
    path = Path(path)
    if size < 1 or build_batch < 1:
        raise ValueError(f"bank size and build_batch must be positive, got {size}, {build_batch}")
    if path.exists():
        raise BankError(f"{path} already exists; open it with open_bank or delete it to rebuild")
    record = record or teacher_record(teacher)
    fresh = _fresh_meta(teacher, record, size, seed, build_batch)
    partial = partial_path(path)
    meta = _resumable_meta(partial, fresh)
    if meta is None:
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        meta = fresh
        images, features = _memmaps(partial, meta, "w+")
        _write_meta(partial, meta)
    else:
        images, features = _memmaps(partial, meta, "r+")
        logger.info("resuming teacher bank %s at %d of %d samples", partial, meta["count"], size)

    first_chunk = len(meta["chunk_crc32"])
    with tqdm(
        total=size,
        initial=meta["count"],
        desc=f"teacher bank {path.name}",
        unit="img",
        disable=not progress,
    ) as bar:
        for chunk in range(first_chunk, math.ceil(size / build_batch)):
            rows = slice(chunk * build_batch, min((chunk + 1) * build_batch, size))
            rng = torch.Generator(device=teacher.device).manual_seed(
                tagged_seed(seed, "build", chunk)
            )
            sample = teacher.sample(rows.stop - rows.start, rng)
            chunk_images = images_to_uint8(sample.images).cpu().numpy()
            chunk_features = torch.cat(sample.features, dim=1).half().cpu().numpy()
            if not np.isfinite(chunk_features).all():
                raise BankError(
                    f"teacher features of samples {rows.start}..{rows.stop - 1} overflow float16 "
                    "(non-finite); this teacher's features cannot be banked, use source=live"
                )
            images[rows], features[rows] = chunk_images, chunk_features
            images.flush()
            features.flush()
            meta["chunk_crc32"].append(_chunk_crcs(chunk_images, chunk_features))
            meta["count"] = rows.stop
            _write_meta(partial, meta)
            bar.update(rows.stop - rows.start)
            if on_chunk is not None:
                on_chunk(rows.stop)
    meta["complete"] = True
    _write_meta(partial, meta)
    del images, features
    os.rename(partial, path)
    return open_bank(path, record, verify=False)


@contextlib.contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively (processes on one machine or a flock-capable share)."""
    with open(path.with_name(path.name + LOCK_SUFFIX), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_bank(
    path: str | Path,
    teacher: GeneratorTeacher,
    *,
    size: int,
    seed: int,
    build_batch: int = 256,
    verify: bool = True,
    record: dict[str, Any] | None = None,
    progress: bool = True,
) -> TeacherBank:
    """The bank at ``path``, built first if absent (one builder at a time), checked against
    ``teacher``, ``size`` and ``seed``."""
    path = Path(path)
    record = record or teacher_record(teacher)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(path):
        if not path.exists():
            build_bank(
                path,
                teacher,
                size=size,
                seed=seed,
                build_batch=build_batch,
                record=record,
                progress=progress,
            )
    bank = open_bank(path, record, verify=False)
    if (bank.size, bank.meta["seed"]) != (size, seed):
        raise BankError(
            f"teacher bank {path} holds {bank.size} samples of seed {bank.meta['seed']} but "
            f"bank_size={size}, bank_seed={seed} were asked for; set bank_path elsewhere (or "
            f"null), or delete {path} to rebuild it"
        )
    if verify:
        verify_checksums(bank)
    return bank
