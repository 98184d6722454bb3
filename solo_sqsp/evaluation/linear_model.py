"""The linear classifier on frozen features: solo-learn's ``LinearModel`` when it is the active
base, else an equivalent built on this package's pieces.

Both take ``(backbone, cfg)`` with solo-learn's linear schema (``data.num_classes``,
``max_epochs``, ``optimizer.*``, ``scheduler.*``, ``finetune``) and log ``train_loss``,
``train_acc1``/``train_acc5`` and the batch-size-weighted ``val_loss``, ``val_acc1``,
``val_acc5`` (percent). With ``finetune: False`` the backbone gets no gradients and stays in
``eval()`` mode during training, so its BatchNorm statistics are those of the checkpoint (the
protocol of the paper's reference ``eval_classification.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torch import Tensor, nn

from solo_sqsp.compat import ACTIVE_BASE, solo_module
from solo_sqsp.config import ConfigError, require, set_default
from solo_sqsp.methods.builtin_base import accuracy_at_k
from solo_sqsp.methods.optimization import ScheduledOptimization, set_optimization_defaults

LinearImplementation = Literal["solo-learn", "builtin"]
CLASSIFIER_INIT_STD = 0.01


def reference_classifier_init(classifier: nn.Linear) -> None:
    """Weights ~ N(0, 0.01^2), zero bias: the reference ``eval_classification.py``'s init."""
    nn.init.normal_(classifier.weight, mean=0.0, std=CLASSIFIER_INIT_STD)
    nn.init.zeros_(classifier.bias)


def backbone_features_dim(backbone: nn.Module) -> int:
    """The feature width solo-learn's ``LinearModel`` reads: ``inplanes`` (torchvision ResNets)
    or ``num_features`` (timm models)."""
    for attribute in ("inplanes", "num_features"):
        if isinstance(getattr(backbone, attribute, None), int):
            return getattr(backbone, attribute)
    raise ValueError(
        f"{type(backbone).__name__} has neither 'inplanes' nor 'num_features': cannot size the "
        "linear classifier"
    )


class LinearModel(ScheduledOptimization, pl.LightningModule):
    """solo-learn's ``LinearModel`` interface without solo-learn (no mixup/label smoothing).

    Optimisers (sgd, lars, adam, adamw), parameter groups and schedules (warmup_cosine, step,
    none) are built by the same code as the built-in base method's.
    """

    def __init__(self, backbone: nn.Module, cfg: DictConfig) -> None:
        super().__init__()
        cfg = self.add_and_assert_specific_cfg(cfg)
        num_classes = require(cfg, "data.num_classes")
        self.backbone = backbone
        self.classifier = nn.Linear(backbone_features_dim(backbone), num_classes)

        self.finetune: bool = cfg.finetune
        self.read_optimization_cfg(cfg)
        self.no_channel_last: bool = cfg.performance.disable_channel_last

        self.backbone.requires_grad_(self.finetune)
        self.validation_step_outputs: list[dict[str, Any]] = []

    @staticmethod
    def add_and_assert_specific_cfg(cfg: DictConfig) -> DictConfig:
        """solo-learn's ``LinearModel`` defaults, with errors naming the key."""
        set_default(cfg, "finetune", False)
        scheduler = set_optimization_defaults(cfg)
        if scheduler == "step" and not cfg.scheduler.lr_decay_steps:
            raise ConfigError("scheduler.name='step' needs scheduler.lr_decay_steps, e.g. [60, 80]")
        set_default(cfg, "performance.disable_channel_last", False)
        return cfg

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        """The classifier; the backbone too when fine-tuning."""
        groups = [{"name": "classifier", "params": self.classifier.parameters()}]
        if self.finetune:
            groups.insert(0, {"name": "backbone", "params": self.backbone.parameters()})
        return groups

    def forward(self, X: Tensor) -> dict[str, Tensor]:
        """``{"feats": backbone features, "logits": classifier output}``."""
        if not self.no_channel_last:
            X = X.to(memory_format=torch.channels_last)
        with torch.set_grad_enabled(self.finetune and self.training):
            feats = self.backbone(X)
        return {"feats": feats, "logits": self.classifier(feats)}

    def shared_step(self, batch: Sequence[Tensor]) -> dict[str, Any]:
        """Cross-entropy and top-1/top-5 accuracy of a ``(X, targets)`` batch."""
        X, targets = batch
        logits = self(X)["logits"]
        acc1, acc5 = accuracy_at_k(logits, targets, top_k=(1, min(5, logits.size(1))))
        loss = F.cross_entropy(logits, targets)
        return {"batch_size": targets.size(0), "loss": loss, "acc1": acc1, "acc5": acc5}

    def training_step(self, batch: Sequence[Tensor], batch_idx: int) -> Tensor:
        """One classifier step; a frozen backbone is kept in ``eval()`` mode."""
        if not self.finetune:
            self.backbone.eval()
        out = self.shared_step(batch)
        self.log_dict(
            {"train_loss": out["loss"], "train_acc1": out["acc1"], "train_acc5": out["acc5"]},
            on_epoch=True,
            sync_dist=True,
        )
        return out["loss"]

    def validation_step(self, batch: Sequence[Tensor], batch_idx: int) -> dict[str, Any]:
        """Validation loss and accuracies of one batch (averaged at the epoch's end)."""
        out = self.shared_step(batch)
        metrics = {
            "batch_size": out["batch_size"],
            "val_loss": out["loss"],
            "val_acc1": out["acc1"],
            "val_acc5": out["acc5"],
        }
        self.validation_step_outputs.append(metrics)
        return metrics

    def on_validation_epoch_end(self) -> None:
        """Log the batch-size-weighted means of the validation metrics."""
        outputs = self.validation_step_outputs
        if outputs:
            total = sum(out["batch_size"] for out in outputs)
            self.log_dict(
                {
                    key: sum(out["batch_size"] * out[key] for out in outputs) / total
                    for key in ("val_loss", "val_acc1", "val_acc5")
                },
                sync_dist=True,
            )
        outputs.clear()


def linear_implementation() -> LinearImplementation:
    """The active base's linear model (``solo_sqsp.compat``)."""
    return ACTIVE_BASE


def build_linear_model(
    backbone: nn.Module, cfg: DictConfig
) -> tuple[pl.LightningModule, LinearImplementation]:
    """``(model, implementation)``: solo-learn's ``LinearModel(backbone, cfg)`` or ours, with
    the classifier initialised as in the reference code."""
    implementation = linear_implementation()
    if implementation == "solo-learn":
        model = solo_module("solo.methods.linear").LinearModel(backbone, cfg=cfg)
    else:
        model = LinearModel(backbone, cfg)
    reference_classifier_init(model.classifier)
    return model, implementation
