"""Where a teacher generator comes from: an NVIDIA StyleGAN2-ADA network pickle, a checkpoint in
our own format, or a Python factory; and the one call that turns any of them into a teacher."""

from __future__ import annotations

import importlib
import importlib.resources
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from solo_sqsp.teachers.adapter import DEFAULT_FEATURES, GeneratorTeacher
from solo_sqsp.teachers.errors import TeacherFileError
from solo_sqsp.teachers.network_pickle import ZIP_MAGIC, load_network_pkl, load_teacher_checkpoint

KINDS = ("auto", "stylegan2", "checkpoint", "python")
PICKLE_PROTO = b"\x80"  # first opcode of a pickle of protocol 2 or later: NVIDIA pickles
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
PYTHON_SPEC = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")
ZOO_SCRIPTS = {  # public teachers, by the file name the configs expect: the script fetching them
    "cifar10u-cifar-ada-best-fid.pkl": "zoo/cifar10.sh",
    "cifar10.pkl": "zoo/cifar10.sh",
}
BUNDLED_PREFIX = "bundled:"  # teachers shipped in solo_sqsp/assets, e.g. bundled:digits_teacher.pt


def bundled_teachers() -> list[str]:
    """File names of the teachers that ship with the package (``solo_sqsp/assets``)."""
    assets = importlib.resources.files("solo_sqsp") / "assets"
    return sorted(item.name for item in assets.iterdir() if item.name.endswith(".pt"))


def resolve_teacher_path(path: str | Path) -> str | Path:
    """``path`` itself, or for ``bundled:NAME`` the installed file ``solo_sqsp/assets/NAME``
    (so configs name the bundled teacher independently of the working folder)."""
    if not str(path).startswith(BUNDLED_PREFIX):
        return path
    name = str(path)[len(BUNDLED_PREFIX) :]
    if name not in bundled_teachers():
        raise TeacherFileError(
            f"no bundled teacher {name!r}; the package ships {bundled_teachers()} "
            f"(write them as {BUNDLED_PREFIX}NAME)"
        )
    return Path(str(importlib.resources.files("solo_sqsp") / "assets" / name))


def detect_kind(path: str | Path) -> str:
    """The kind of ``path``: ``python`` for a ``package.module:factory`` spec that is not a
    file; for a file, ``checkpoint`` (zip magic or .pt/.pth/.ckpt) or ``stylegan2`` (.pkl or
    a plain pickle)."""
    path = resolve_teacher_path(path)
    file = Path(path)
    if not file.exists():
        if PYTHON_SPEC.fullmatch(str(path)):
            return "python"
        raise _missing_teacher(file)
    if file.is_dir():
        raise TeacherFileError(f"teacher path {file} is a folder; pass the generator file in it")
    with open(file, "rb") as stream:
        head = stream.read(len(ZIP_MAGIC))
    if not head:
        raise TeacherFileError(f"teacher file {file} is empty; download or save it again")
    if head == ZIP_MAGIC:
        return "checkpoint"
    if file.suffix == ".pkl":
        return "stylegan2"
    if file.suffix in CHECKPOINT_SUFFIXES:
        return "checkpoint"
    if head.startswith(PICKLE_PROTO):
        return "stylegan2"
    raise TeacherFileError(
        f"cannot tell what kind of teacher file {file} is (neither a zip checkpoint nor a "
        f"pickle); pass kind= one of {KINDS[1:]}"
    )


def load_generator(
    path: str | Path, kind: str = "auto", factory_kwargs: Mapping[str, Any] | None = None
) -> nn.Module:
    """The generator module stored at ``path`` (on the CPU).

    ``kind``: ``stylegan2`` an NVIDIA StyleGAN2-ADA network pickle (its ``G_ema``, read without
    running code from the file); ``checkpoint`` our teacher checkpoint; ``python`` an import
    path ``package.module:factory`` called with ``factory_kwargs``; ``auto`` by ``detect_kind``.
    ``bundled:NAME`` names a teacher shipped with the package.
    """
    path = resolve_teacher_path(path)
    if kind not in KINDS:
        raise ValueError(f"teacher kind {kind!r} is unknown; use one of {KINDS}")
    if kind == "auto":
        kind = detect_kind(path)
    if kind == "python":
        return _generator_from_factory(str(path), factory_kwargs or {})
    file = Path(path)
    if not file.is_file():
        raise _missing_teacher(file)
    if kind == "checkpoint":
        return load_teacher_checkpoint(file)
    with open(file, "rb") as stream:
        networks = load_network_pkl(stream)
    if "G_ema" not in networks:
        raise TeacherFileError(f"network pickle {file} holds no 'G_ema' generator")
    return networks["G_ema"]


def build_teacher(
    path: str | Path,
    kind: str = "auto",
    features: str | Sequence[str] = DEFAULT_FEATURES,
    device: str | torch.device = "cpu",
    factory_kwargs: Mapping[str, Any] | None = None,
    **teacher_kwargs: Any,
) -> GeneratorTeacher:
    """``GeneratorTeacher`` of the generator at ``path``, placed on ``device`` before its dry
    run; ``teacher_kwargs`` go to ``GeneratorTeacher`` (class_sampling, noise_mode, ...)."""
    generator = load_generator(path, kind, factory_kwargs).to(device)
    return GeneratorTeacher(generator, features=features, **teacher_kwargs)


def _missing_teacher(file: Path) -> TeacherFileError:
    script = ZOO_SCRIPTS.get(file.name)
    if script is not None:
        fix = f"download it with `bash {script}` (offline: copy the file there by hand)"
    else:
        fix = (
            "no public download is known for it: train a teacher with `python "
            "scripts/teacher/train_teacher.py --data <image folder> --out <file>.pt`, or pass "
            "your own network pickle with method_kwargs.teacher.path=<file>"
        )
    return TeacherFileError(f"teacher file not found: {file}; {fix}")


def _generator_from_factory(spec: str, factory_kwargs: Mapping[str, Any]) -> nn.Module:
    if not PYTHON_SPEC.fullmatch(spec):
        raise TeacherFileError(
            f"python teacher {spec!r} is not an import path of the form package.module:factory"
        )
    module_name, attribute = spec.split(":")
    try:
        factory: Any = importlib.import_module(module_name)
    except ImportError as err:
        raise TeacherFileError(f"teacher {spec!r}: cannot import {module_name}: {err}") from err
    for part in attribute.split("."):
        if not hasattr(factory, part):
            raise TeacherFileError(f"teacher {spec!r}: {module_name} has no {attribute!r}")
        factory = getattr(factory, part)
    if not callable(factory):
        raise TeacherFileError(f"teacher {spec!r} is not callable")
    generator = factory(**factory_kwargs)
    if not isinstance(generator, nn.Module):
        raise TeacherFileError(
            f"teacher factory {spec!r} returned a {type(generator).__name__}; it must return "
            "the generator nn.Module"
        )
    return generator
