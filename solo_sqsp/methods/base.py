"""The base every method subclasses: solo-learn's ``BaseMethod`` when importable, else ours.

``ACTIVE_BASE`` (``"solo-learn"`` or ``"builtin"``) is decided once by ``solo_sqsp.compat``
(``SOLO_SQSP_BASE``).

On solo-learn, ``BaseMethod`` and every solo-learn method ``get_method`` serves (``vicreg``,
``simsiam``, ...) get these adjustments (``on_solo_learn``) so both bases train the same network,
report the same numbers and stay usable: the ResNet backbone comes from
``solo_sqsp.models.backbones`` (``backbone.cifar_stem``, also for ``digits``); the online k-NN is
``solo_sqsp.metrics.knn_classifier`` (solo-learn's passes ``compute_on_step``, which current
torchmetrics rejects) and its training bank is the clean training split read at validation
(``solo_sqsp.methods.knn_bank``), not the augmented training views solo-learn's ``training_step``
collects; ``method_kwargs.head: authors`` replaces the heads solo-learn's ``vicreg``/``simsiam``
built (``solo_sqsp.models.heads``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import omegaconf

from solo_sqsp.compat import ACTIVE_BASE, solo_module
from solo_sqsp.config import omegaconf_select, set_method_defaults
from solo_sqsp.methods import builtin_base
from solo_sqsp.methods.domains import with_domain
from solo_sqsp.methods.knn_bank import take_bank_batch
from solo_sqsp.metrics.knn_classifier import WeightedKNNClassifier
from solo_sqsp.models.backbones import BACKBONES, build_backbone, uses_cifar_stem
from solo_sqsp.models.heads import head_choice, install_heads

__all__ = [
    "ACTIVE_BASE",
    "METHODS",
    "BaseMethod",
    "get_method",
    "omegaconf_select",
    "register_method",
    "set_method_defaults",
]

if ACTIVE_BASE == "solo-learn":
    _SOLO_BASE: type | None = solo_module("solo.methods.base").BaseMethod
    SOLO_METHODS: dict[str, type] | None = solo_module("solo.methods").METHODS
else:
    _SOLO_BASE, SOLO_METHODS = None, None


class _SoloLearnAdjustments:
    """What ``on_solo_learn`` adds to a solo-learn method class (see the module docstring)."""

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
            self.knn = WeightedKNNClassifier(k=self.knn_k, distance_fx=cfg.knn_eval.distance_func)
        if self.backbone_name in BACKBONES:
            self.backbone, features_dim = build_backbone(
                self.backbone_name,
                cifar_stem=cfg.backbone.cifar_stem,
                **omegaconf.OmegaConf.to_container(cfg.backbone.kwargs),
            )
            if features_dim != self.features_dim:  # heads were sized by solo-learn's backbone
                raise ValueError(
                    f"backbone {self.backbone_name}: this project's build has {features_dim}-d "
                    f"features, solo-learn's {self.features_dim}-d; use a solo-learn backbone name"
                )
        install_heads(self, cfg)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> Any:
        """solo-learn's training step without its k-NN update (the bank is filled at
        validation from the clean training split)."""
        knn_eval, self.knn_eval = self.knn_eval, False
        try:
            return super().training_step(batch, batch_idx)
        finally:
            self.knn_eval = knn_eval

    def validation_step(
        self,
        batch: Sequence[Any],
        batch_idx: int,
        dataloader_idx: int | None = None,
        update_validation_step_outputs: bool = True,
    ) -> Any:
        """A batch of the clean training split (``KNN_BANK_LOADER``) to the k-NN's bank, any
        other to solo-learn's validation step."""
        if take_bank_batch(self, batch, dataloader_idx):
            return None
        return super().validation_step(
            batch, batch_idx, dataloader_idx, update_validation_step_outputs
        )

    def on_validation_epoch_end(self) -> None:
        """solo-learn's logging, then empty the k-NN banks (ours never reset themselves)."""
        super().on_validation_epoch_end()
        if self.knn_eval:
            self.knn.reset()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Drop solo-learn's ``static_lr`` patch (a ``functools.partial`` stored as the
        scheduler's ``get_lr``) from the scheduler states, so ``torch.load(weights_only=True)``
        (our evaluation, solo-learn's ``main_linear.py``) reads the checkpoint; a resumed run gets
        the patch back from ``configure_optimizers``."""
        super().on_save_checkpoint(checkpoint)
        for state in checkpoint.get("lr_schedulers", []):
            state.pop("get_lr", None)


def on_solo_learn(method: type) -> type:
    """solo-learn's ``method`` (``BaseMethod`` or any of its methods) with this project's ResNet
    backbones (``backbone.cifar_stem``) and k-NN metric."""

    class Adjusted(_SoloLearnAdjustments, method):
        @staticmethod
        def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
            """solo-learn's defaults plus ``backbone.cifar_stem`` resolved to a bool; an unknown
            ``backbone.name`` is a ValueError naming the choices (solo-learn asserts later);
            ``method_kwargs.head`` checked (``solo_sqsp.models.heads``)."""
            head_choice(cfg, omegaconf_select(cfg, "method", ""))  # before solo-learn's asserts
            cfg = method.add_and_assert_specific_cfg(cfg)
            name = omegaconf_select(cfg, "backbone.name")
            choices = sorted(getattr(method, "_BACKBONES", {}))
            if choices and name not in choices:
                raise ValueError(f"backbone.name={name!r}: choose one of {choices}")
            omegaconf.OmegaConf.update(
                cfg, "backbone.cifar_stem", uses_cifar_stem(cfg), force_add=True
            )
            return cfg

    Adjusted.__name__ = Adjusted.__qualname__ = method.__name__
    Adjusted.__doc__ = f"solo-learn's {method.__name__} with this project's backbones and k-NN."
    return Adjusted


BaseMethod = builtin_base.BaseMethod if _SOLO_BASE is None else on_solo_learn(_SOLO_BASE)


METHODS: dict[str, type] = {"base": BaseMethod}


def register_method(name: str, cls: type) -> type:
    """Make ``cls`` available as ``cfg.method == name`` here and, when active, in solo-learn."""
    METHODS[name] = cls
    if SOLO_METHODS is not None:
        SOLO_METHODS[name] = cls
    return cls


def get_method(name: str) -> type:
    """The method class registered as ``name``: ours first, then any of solo-learn's own methods,
    adjusted (``on_solo_learn``) and with the ``method_kwargs.synthetic.domain`` option
    (``solo_sqsp.methods.domains``)."""
    if name in METHODS:
        return METHODS[name]
    if SOLO_METHODS is not None and name in SOLO_METHODS:
        METHODS[name] = with_domain(on_solo_learn(SOLO_METHODS[name]))
        return METHODS[name]
    known = sorted({*METHODS, *(SOLO_METHODS or {})})
    raise KeyError(f"method {name!r} is not registered (base: {ACTIVE_BASE}); known: {known}")
