"""The online classifier on real images the student must not learn from.

Squeeze only (``sqsp`` with ``syn_ratio: 1``) and the ``syn`` domain of the two-view methods
train the student on synthetic images alone: the paper's reference code reads no real image in
Squeeze only. The online classifier still reports progress from the real training batch, through
``monitor_step``: the backbone runs in eval mode (BN running statistics used, not updated) and
without gradients, then is put back in its mode; the classifier trains on those features as it
always does on detached ones. No projector sees the real images.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from solo_sqsp.methods.builtin_base import accuracy_at_k

UNLABELLED = -1


def classifier_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Cross-entropy over the labelled rows; 0 (still a graph node) when none is labelled
    (cross-entropy over no target is NaN)."""
    if not bool((targets != UNLABELLED).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, targets, ignore_index=UNLABELLED)


def monitor_step(method: Any, X: Tensor, targets: Tensor) -> dict[str, Any]:
    """The classifier's ``loss``/``acc1``/``acc5`` (and ``feats``, ``logits``) on ``X``, which
    change neither the student's BN statistics nor its gradients (module docstring)."""
    backbone = method.backbone
    if not method.no_channel_last:
        X = X.to(memory_format=torch.channels_last)
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            feats = backbone(X)
    finally:
        backbone.train(was_training)
    logits = method.classifier(feats)
    acc1, acc5 = accuracy_at_k(logits, targets, top_k=(1, min(5, logits.size(1))))
    return {
        "feats": feats,
        "logits": logits,
        "loss": classifier_loss(logits, targets),
        "acc1": acc1,
        "acc5": acc5,
    }
