"""Which data backend is active: solo-learn's own data pieces, or this package's equivalents.

solo-learn's current source (GitHub, put on ``PYTHONPATH``) provides the augmentation pipelines,
datasets and dataloaders its SimSiam/VICReg numbers come from; when it imports, the loaders of this
package hand the work to it. Otherwise they build the same pipelines from torchvision.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from functools import cache
from types import ModuleType
from typing import Literal

Backend = Literal["solo-learn", "builtin"]
BACKENDS: tuple[Backend, ...] = ("solo-learn", "builtin")

# What the solo-learn backend calls; a ``solo`` package without them (e.g. the 2021 release on
# the package index) is not the solo-learn this package builds on.
_REQUIRED = {
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


@cache
def _solo_modules() -> dict[str, ModuleType] | None:
    if importlib.util.find_spec("solo") is None:
        return None
    try:
        modules = {name: importlib.import_module(name) for name in _REQUIRED}
    except ImportError as error:
        warnings.warn(
            f"solo-learn is on the path but its data modules do not import ({error}); "
            "using the built-in torchvision data pipelines instead",
            stacklevel=3,
        )
        return None
    for name, attributes in _REQUIRED.items():
        missing = [a for a in attributes if not hasattr(modules[name], a)]
        if missing:
            warnings.warn(
                f"the 'solo' package found lacks {name}.{', '.join(missing)} (not solo-learn's "
                "current API); using the built-in torchvision data pipelines instead",
                stacklevel=3,
            )
            return None
    return modules


def active_backend() -> Backend:
    """``"solo-learn"`` when solo-learn's current data modules import, else ``"builtin"``."""
    return "builtin" if _solo_modules() is None else "solo-learn"


def resolve_backend(backend: Backend | None) -> Backend:
    """``backend`` if given (checked), else the active one."""
    if backend is None:
        return active_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "solo-learn" and _solo_modules() is None:
        raise ValueError(
            "backend='solo-learn' was requested but solo-learn's current source does not import: "
            "put a checkout of vturrisi/solo-learn on PYTHONPATH and pip install timm scipy"
        )
    return backend


def solo_pretrain_data() -> ModuleType:
    """``solo.data.pretrain_dataloader`` (only call when the solo-learn backend is active)."""
    return _solo_modules()["solo.data.pretrain_dataloader"]


def solo_classification_data() -> ModuleType:
    """``solo.data.classification_dataloader`` (only call with the solo-learn backend)."""
    return _solo_modules()["solo.data.classification_dataloader"]
