"""Which data pipelines are active: solo-learn's own, or this package's equivalents.

One switch decides (``solo_sqsp.compat``, ``SOLO_SQSP_BASE``): with solo-learn as the base, the
loaders of this package hand the work to its augmentation pipelines, datasets and dataloaders
(the ones its SimSiam/VICReg numbers come from); otherwise they build the same pipelines from
torchvision.
"""

from __future__ import annotations

from types import ModuleType

from solo_sqsp.compat import ACTIVE_BASE, Base, solo_module

Backend = Base
BACKENDS: tuple[Backend, ...] = ("solo-learn", "builtin")


def active_backend() -> Backend:
    """The active base's data pipelines: ``"solo-learn"`` or ``"builtin"``."""
    return ACTIVE_BASE


def resolve_backend(backend: Backend | None) -> Backend:
    """``backend`` if given (checked), else the active one."""
    if backend is None:
        return active_backend()
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "solo-learn" and ACTIVE_BASE != "solo-learn":
        raise ValueError(
            "backend='solo-learn' was requested but solo-learn is not the active base "
            "(SOLO_SQSP_BASE, solo_sqsp.compat): put a checkout of vturrisi/solo-learn on "
            "PYTHONPATH and pip install -e '.[solo]'"
        )
    return backend


def solo_pretrain_data() -> ModuleType:
    """``solo.data.pretrain_dataloader`` (only call when the solo-learn backend is active)."""
    return solo_module("solo.data.pretrain_dataloader")


def solo_classification_data() -> ModuleType:
    """``solo.data.classification_dataloader`` (only call with the solo-learn backend)."""
    return solo_module("solo.data.classification_dataloader")
