"""The one solo-learn switch: methods, data pipelines and the linear model all ask here.

``SOLO_SQSP_BASE`` (read once, at import) is ``auto`` (default), ``builtin`` or ``solo-learn``.
``builtin`` imports no ``solo`` module; ``solo-learn`` fails loudly unless solo-learn's current
API imports; ``auto`` uses solo-learn when its checkout is on the path and imports, and otherwise
warns (naming the error) before falling back. ``ACTIVE_BASE`` says which won.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from types import ModuleType
from typing import Literal

Base = Literal["solo-learn", "builtin"]
BASE_CHOICES = ("auto", "builtin", "solo-learn")

logger = logging.getLogger(__name__)

# What this package calls in solo-learn; a ``solo`` package without them (e.g. the 2021 release on
# the package index) is not the solo-learn it builds on.
REQUIRED: dict[str, tuple[str, ...]] = {
    "solo.methods": ("METHODS",),
    "solo.methods.base": ("BaseMethod",),
    "solo.methods.linear": ("LinearModel",),
    "solo.data.pretrain_dataloader": (
        "build_transform_pipeline",
        "NCropAugmentation",
        "FullTransformPipeline",
        "prepare_datasets",
        "prepare_dataloader",
    ),
    "solo.data.classification_dataloader": (
        "prepare_transforms",
        "prepare_datasets",
        "prepare_dataloaders",
    ),
}


def _import_required() -> dict[str, ModuleType]:
    """Every module of ``REQUIRED``; ImportError naming what is missing."""
    modules = {name: importlib.import_module(name) for name in REQUIRED}
    for name, attributes in REQUIRED.items():
        missing = [a for a in attributes if not hasattr(modules[name], a)]
        if missing:
            raise ImportError(
                f"the 'solo' package found lacks {name}.{', '.join(missing)} "
                "(not solo-learn's current API)"
            )
    return modules


def _load_solo_learn() -> dict[str, ModuleType]:
    """solo-learn's modules when it is the base, else ``{}`` (see the module docstring)."""
    choice = os.environ.get("SOLO_SQSP_BASE", "auto")
    if choice not in BASE_CHOICES:
        raise ValueError(f"SOLO_SQSP_BASE={choice!r}: choose one of {BASE_CHOICES}")
    if choice == "builtin" or (choice == "auto" and importlib.util.find_spec("solo") is None):
        return {}
    try:
        return _import_required()
    except ImportError as error:
        if choice == "solo-learn":
            raise ImportError(
                f"SOLO_SQSP_BASE=solo-learn but solo-learn does not import ({error}); put its "
                "checkout on PYTHONPATH and install its extras: pip install -e '.[solo]'"
            ) from error
        logger.warning(
            "solo-learn was found but does not import (%s); using the builtin base. Install its "
            "dependencies (pip install -e '.[solo]') or set SOLO_SQSP_BASE=builtin to silence.",
            error,
        )
        return {}


_SOLO_MODULES = _load_solo_learn()
ACTIVE_BASE: Base = "solo-learn" if _SOLO_MODULES else "builtin"


def solo_module(name: str) -> ModuleType:
    """solo-learn's module ``name`` (one of ``REQUIRED``); only when solo-learn is the base."""
    if not _SOLO_MODULES:
        raise RuntimeError(f"{name} asked for, but the active base is {ACTIVE_BASE}")
    return _SOLO_MODULES[name]
