"""The base every method subclasses: solo-learn's ``BaseMethod`` when importable, else ours.

``ACTIVE_BASE`` is ``"solo-learn"`` or ``"builtin"``. The environment variable
``SOLO_SQSP_BASE`` picks one explicitly (``auto`` by default): ``builtin`` never imports
solo-learn, ``solo-learn`` fails loudly when it cannot be imported. A solo-learn checkout that is
found but fails to import (a missing dependency such as timm or scipy) is reported in a warning
naming the error before falling back; any error other than ImportError propagates.

On solo-learn, ``BaseMethod`` is solo-learn's with two adjustments so both bases train the same
network and stay usable: the ResNet backbone comes from ``solo_sqsp.backbones`` (``backbone.
cifar_stem``, also for ``digits``), and the online k-NN is ``solo_sqsp.knn`` (solo-learn's passes
``compute_on_step``, which current torchmetrics rejects).
"""

from __future__ import annotations

import importlib.util
import logging
import os

import omegaconf

from solo_sqsp.backbones import BACKBONES, build_backbone, uses_cifar_stem
from solo_sqsp.config import omegaconf_select
from solo_sqsp.knn import WeightedKNNClassifier
from solo_sqsp.methods import builtin_base

__all__ = [
    "ACTIVE_BASE",
    "METHODS",
    "BaseMethod",
    "get_method",
    "omegaconf_select",
    "register_method",
]

logger = logging.getLogger(__name__)
BASE_CHOICES = ("auto", "builtin", "solo-learn")


def _import_solo_learn() -> tuple[type | None, dict[str, type] | None]:
    """solo-learn's ``(BaseMethod, METHODS)``, or ``(None, None)`` to use the builtin base."""
    choice = os.environ.get("SOLO_SQSP_BASE", "auto")
    if choice not in BASE_CHOICES:
        raise ValueError(f"SOLO_SQSP_BASE={choice!r}: choose one of {BASE_CHOICES}")
    if choice == "builtin":
        return None, None
    if choice == "auto" and importlib.util.find_spec("solo") is None:
        return None, None
    try:
        import solo.methods
        from solo.methods.base import BaseMethod as SoloBaseMethod
    except ImportError as error:
        if choice == "solo-learn":
            raise ImportError(
                f"SOLO_SQSP_BASE=solo-learn but solo-learn does not import ({error!r}); put its "
                "checkout on PYTHONPATH and install its extras: pip install -e '.[solo]'"
            ) from error
        logger.warning(
            "solo-learn was found but does not import (%r); using the builtin base. Install its "
            "dependencies (pip install -e '.[solo]') or set SOLO_SQSP_BASE=builtin to silence.",
            error,
        )
        return None, None
    return SoloBaseMethod, solo.methods.METHODS


_SOLO_BASE, SOLO_METHODS = _import_solo_learn()
ACTIVE_BASE = "builtin" if _SOLO_BASE is None else "solo-learn"


if _SOLO_BASE is None:
    BaseMethod = builtin_base.BaseMethod
else:

    class BaseMethod(_SOLO_BASE):
        """solo-learn's ``BaseMethod`` with this project's ResNet backbones and k-NN metric."""

        def __init__(self, cfg: omegaconf.DictConfig) -> None:
            cfg = self.add_and_assert_specific_cfg(cfg)
            knn_enabled = cfg.knn_eval.enabled
            cfg.knn_eval.enabled = False  # solo-learn's k-NN does not construct: use ours
            try:
                super().__init__(cfg)
            finally:
                cfg.knn_eval.enabled = knn_enabled
            self.knn_eval = knn_enabled
            if knn_enabled:
                self.knn = WeightedKNNClassifier(
                    k=self.knn_k, distance_fx=cfg.knn_eval.distance_func
                )
            if self.backbone_name in BACKBONES:
                self.backbone, self.features_dim = build_backbone(
                    self.backbone_name,
                    cifar_stem=cfg.backbone.cifar_stem,
                    **omegaconf.OmegaConf.to_container(cfg.backbone.kwargs),
                )

        @staticmethod
        def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
            """solo-learn's defaults plus ``backbone.cifar_stem`` resolved to a bool."""
            cfg = _SOLO_BASE.add_and_assert_specific_cfg(cfg)
            omegaconf.OmegaConf.update(
                cfg, "backbone.cifar_stem", uses_cifar_stem(cfg), force_add=True
            )
            return cfg

        def on_validation_epoch_end(self) -> None:
            """solo-learn's logging, then empty the k-NN banks (ours never reset themselves)."""
            super().on_validation_epoch_end()
            if self.knn_eval:
                self.knn.reset()


METHODS: dict[str, type] = {"base": BaseMethod}


def register_method(name: str, cls: type) -> type:
    """Make ``cls`` available as ``cfg.method == name`` here and, when active, in solo-learn."""
    METHODS[name] = cls
    if SOLO_METHODS is not None:
        SOLO_METHODS[name] = cls
    return cls


def get_method(name: str) -> type:
    """The method class registered as ``name`` (ours first, then solo-learn's own methods)."""
    if name in METHODS:
        return METHODS[name]
    if SOLO_METHODS is not None and name in SOLO_METHODS:
        return SOLO_METHODS[name]
    known = sorted({*METHODS, *(SOLO_METHODS or {})})
    raise KeyError(f"method {name!r} is not registered (base: {ACTIVE_BASE}); known: {known}")
