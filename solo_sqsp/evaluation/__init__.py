"""Evaluation of pretrained backbones: offline linear classification and weighted k-NN.

``run_linear`` and ``run_knn`` are what ``main_linear.py`` and ``main_knn.py`` run; both start
from :func:`load_frozen_backbone` on ``pretrained_feature_extractor``.
"""

from solo_sqsp.evaluation.checkpoint import (
    BackboneSpec,
    CheckpointError,
    PretrainedBackbone,
    load_frozen_backbone,
)
from solo_sqsp.evaluation.knn import KnnResult, run_knn
from solo_sqsp.evaluation.linear import run_linear

__all__ = [
    "BackboneSpec",
    "CheckpointError",
    "KnnResult",
    "PretrainedBackbone",
    "load_frozen_backbone",
    "run_knn",
    "run_linear",
]
