"""The built-in base method: solo-learn's ``BaseMethod`` interface on Lightning + torchvision alone.

Used when solo-learn is not importable (see ``solo_sqsp.methods.base``). Same config schema, same
method names and semantics, only what this project's methods need: ResNet backbones, the online
linear classifier on detached features, SGD/LARS/Adam/AdamW, ``warmup_cosine``/``step``/``none``
schedules (``solo_sqsp.methods.optimization``), and online weighted k-NN evaluation.

Batches: training ``[indexes, [X_1, ..., X_n], targets]`` (``n = num_large_crops +
num_small_crops``, one tensor allowed for ``n = 1``); validation ``(X, targets)``. Targets of -1
(unlabelled) are ignored by the classifier loss and the k-NN bank. The online k-NN's training
bank is the clean training split, read as a second validation loader
(``solo_sqsp.methods.knn_bank``), not solo-learn's augmented training views.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import omegaconf
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import Tensor, nn

from solo_sqsp.config import require, set_default
from solo_sqsp.methods.knn_bank import take_bank_batch
from solo_sqsp.methods.optimization import ScheduledOptimization, set_optimization_defaults
from solo_sqsp.metrics.knn_classifier import WeightedKNNClassifier
from solo_sqsp.models.backbones import BACKBONES, build_backbone, uses_cifar_stem

PARSE_HINT = "solo_sqsp.config.parse_cfg sets it from data.dataset and augmentations"


def accuracy_at_k(logits: Tensor, targets: Tensor, top_k: Sequence[int]) -> list[Tensor]:
    """Percent of rows whose target is among the ``k`` largest logits, for each ``k``."""
    with torch.no_grad():
        top = logits.topk(max(top_k), dim=1).indices
        hits = top == targets[:, None]
        return [hits[:, :k].any(dim=1).float().mean() * 100.0 for k in top_k]


class BaseMethod(ScheduledOptimization, pl.LightningModule):
    """Backbone + online classifier, optimisers, schedules and online k-NN, as solo-learn's.

    Subclasses override ``add_and_assert_specific_cfg`` (calling the parent's), extend
    ``learnable_params`` and ``forward``, and call ``super().training_step`` to get per-crop
    outputs (lists) plus the online classifier's ``loss``.
    """

    def __init__(self, cfg: omegaconf.DictConfig) -> None:
        super().__init__()
        cfg = self.add_and_assert_specific_cfg(cfg)
        self.cfg = cfg

        self.backbone_name: str = cfg.backbone.name
        self.backbone_args: dict[str, Any] = OmegaConf.to_container(cfg.backbone.kwargs)
        self.backbone, self.features_dim = build_backbone(
            self.backbone_name, cifar_stem=cfg.backbone.cifar_stem, **self.backbone_args
        )
        self.num_classes: int = cfg.data.num_classes
        self.classifier = nn.Linear(self.features_dim, self.num_classes)

        self.accumulate_grad_batches: int = cfg.accumulate_grad_batches
        self.batch_size: int = cfg.optimizer.batch_size
        # Gradient accumulation takes larger effective steps: rates scale with it (solo-learn).
        scale = cfg.accumulate_grad_batches
        self.read_optimization_cfg(cfg, lr_scale=scale)
        self.classifier_lr: float = cfg.optimizer.classifier_lr * scale

        self.num_large_crops: int = cfg.data.num_large_crops
        self.num_small_crops: int = cfg.data.num_small_crops
        self.num_crops: int = self.num_large_crops + self.num_small_crops
        self.multicrop: bool = self.num_small_crops != 0

        self.knn_eval: bool = cfg.knn_eval.enabled
        self.knn_k: int = cfg.knn_eval.k
        if self.knn_eval:
            self.knn = WeightedKNNClassifier(k=self.knn_k, distance_fx=cfg.knn_eval.distance_func)

        self.no_channel_last: bool = cfg.performance.disable_channel_last
        self.validation_step_outputs: list[dict[str, Any]] = []

    @staticmethod
    def add_and_assert_specific_cfg(cfg: omegaconf.DictConfig) -> omegaconf.DictConfig:
        """Defaults and checks of the base keys (solo-learn's values); idempotent."""
        name = require(cfg, "backbone.name", f"one of {sorted(BACKBONES)}")
        if name not in BACKBONES:
            raise ValueError(f"backbone.name={name!r}: choose one of {sorted(BACKBONES)}")
        set_default(cfg, "backbone.kwargs", {})
        OmegaConf.update(cfg, "backbone.cifar_stem", uses_cifar_stem(cfg), force_add=True)

        require(cfg, "data.dataset")
        for key in ("data.num_classes", "data.num_large_crops", "data.num_small_crops"):
            require(cfg, key, PARSE_HINT)
        set_optimization_defaults(
            cfg, required=("batch_size", "lr", "weight_decay", "classifier_lr")
        )

        set_default(cfg, "knn_eval.enabled", False)
        set_default(cfg, "knn_eval.k", 20)
        set_default(cfg, "knn_eval.distance_func", "euclidean")
        set_default(cfg, "performance.disable_channel_last", False)
        set_default(cfg, "method_kwargs", {})
        return cfg

    @property
    def learnable_params(self) -> list[dict[str, Any]]:
        """Parameter groups (dicts with ``name`` and ``params``; optional ``lr``,
        ``weight_decay``, ``static_lr``). The classifier trains at ``classifier_lr``, no decay."""
        return [
            {"name": "backbone", "params": self.backbone.parameters()},
            {
                "name": "classifier",
                "params": self.classifier.parameters(),
                "lr": self.classifier_lr,
                "weight_decay": 0,
            },
        ]

    def forward(self, X: Tensor) -> dict[str, Any]:
        """``{"feats": backbone features, "logits": classifier on detached features}``;
        subclasses add outputs to this dict."""
        if not self.no_channel_last:
            X = X.to(memory_format=torch.channels_last)
        feats = self.backbone(X)
        return {"logits": self.classifier(feats.detach()), "feats": feats}

    def multicrop_forward(self, X: Tensor) -> dict[str, Any]:
        """Small crops: ``{"feats": ...}`` only (no classifier)."""
        if not self.no_channel_last:
            X = X.to(memory_format=torch.channels_last)
        return {"feats": self.backbone(X)}

    def _base_shared_step(self, X: Tensor, targets: Tensor) -> dict[str, Any]:
        """``forward`` plus the classifier's cross-entropy ``loss``, ``acc1`` and ``acc5``."""
        out = self(X)
        logits = out["logits"]
        loss = F.cross_entropy(logits, targets, ignore_index=-1)
        acc1, acc5 = accuracy_at_k(logits, targets, top_k=(1, min(5, logits.size(1))))
        out.update({"loss": loss, "acc1": acc1, "acc5": acc5})
        return out

    def base_training_step(self, X: Tensor, targets: Tensor) -> dict[str, Any]:
        """One large crop's training outputs; override to change how crops are forwarded."""
        return self._base_shared_step(X, targets)

    def training_step(self, batch: Sequence[Any], batch_idx: int) -> dict[str, Any]:
        """Forward every crop; return outputs as lists over crops (large crops first) with
        ``loss``/``acc1``/``acc5`` of the online classifier averaged over the large crops."""
        _, X, targets = batch
        X = [X] if isinstance(X, Tensor) else X
        if len(X) != self.num_crops:
            raise ValueError(
                f"training batch has {len(X)} crops but the config asks for {self.num_crops} "
                f"({self.num_large_crops} large + {self.num_small_crops} small): check "
                "augmentations[*].num_crops against the data loader"
            )
        per_crop = [self.base_training_step(x, targets) for x in X[: self.num_large_crops]]
        outs = {key: [out[key] for out in per_crop] for key in per_crop[0]}
        if self.multicrop:
            small = [self.multicrop_forward(x) for x in X[self.num_large_crops :]]
            for key in small[0]:
                outs[key] = outs.get(key, []) + [out[key] for out in small]

        for key in ("loss", "acc1", "acc5"):
            outs[key] = sum(outs[key]) / self.num_large_crops
        self.log_dict(
            {
                "train_class_loss": outs["loss"],
                "train_acc1": outs["acc1"],
                "train_acc5": outs["acc5"],
            },
            on_epoch=True,
            sync_dist=True,
        )
        return outs

    def base_validation_step(self, X: Tensor, targets: Tensor) -> dict[str, Any]:
        """Validation outputs of one batch; override to change the forward pass."""
        return self._base_shared_step(X, targets)

    def validation_step(
        self,
        batch: Sequence[Tensor],
        batch_idx: int,
        dataloader_idx: int | None = None,
        update_validation_step_outputs: bool = True,
    ) -> dict[str, Any] | None:
        """Classifier loss/accuracies of a ``(X, targets)`` batch of the validation split, its
        features to the k-NN's queries; a batch of the clean training split (``dataloader_idx ==
        KNN_BANK_LOADER``) goes to the k-NN's bank alone."""
        if take_bank_batch(self, batch, dataloader_idx):
            return None
        X, targets = batch
        out = self.base_validation_step(X, targets)
        if self.knn_eval and not self.trainer.sanity_checking:
            self.knn.update(test_features=out["feats"].detach(), test_targets=targets.detach())
        metrics = {
            "batch_size": targets.size(0),
            "val_loss": out["loss"],
            "val_acc1": out["acc1"],
            "val_acc5": out["acc5"],
        }
        if update_validation_step_outputs:
            self.validation_step_outputs.append(metrics)
        return metrics

    def on_validation_epoch_end(self) -> None:
        """Log batch-size-weighted means of the validation metrics and the k-NN accuracies,
        then empty the k-NN banks for the next epoch."""
        outputs = self.validation_step_outputs
        if outputs:
            total = sum(out["batch_size"] for out in outputs)
            log = {
                key: sum(out["batch_size"] * out[key] for out in outputs) / total
                for key in ("val_loss", "val_acc1", "val_acc5")
            }
            if self.knn_eval and not self.trainer.sanity_checking:
                log["val_knn_acc1"], log["val_knn_acc5"] = self.knn.compute()
            self.log_dict(log, sync_dist=True)
        if self.knn_eval:
            self.knn.reset()
        self.validation_step_outputs.clear()
