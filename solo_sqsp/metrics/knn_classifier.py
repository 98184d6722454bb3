"""Weighted k-NN classification of frozen features (the online and offline k-NN evaluation).

Each test sample takes its ``k`` nearest training samples and sums a weight per class:
- ``cosine``: features L2-normalised, similarity ``s = <a, b>``, weight ``exp(s / T)``
  (the instance-discrimination protocol of Wu et al. 2018 that solo-learn follows);
- ``euclidean``: similarity ``s = 1 / (||a - b|| + epsilon)``, used as the weight itself
  (``T`` does not apply), as in solo-learn.
The predicted class is the one with the largest summed weight; top-5 counts the 5 best classes
that received any weight (solo-learn also counts zero-weight classes, in arbitrary order).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

DISTANCES = ("cosine", "euclidean")


def knn_class_scores(
    train_features: Tensor,
    train_targets: Tensor,
    test_features: Tensor,
    num_classes: int,
    k: int = 20,
    distance_fx: str = "cosine",
    T: float = 0.07,
    epsilon: float = 1e-5,
    chunk_size: int = 1024,
) -> Tensor:
    """Summed neighbour weights per class, ``(num_test, num_classes)``, ``chunk_size`` test rows
    at a time (the distance matrix of a chunk is ``chunk_size x num_train``)."""
    if distance_fx not in DISTANCES:
        raise ValueError(f"distance_fx must be one of {DISTANCES}, got {distance_fx!r}")
    if distance_fx == "cosine":
        train_features = F.normalize(train_features, dim=1)
        test_features = F.normalize(test_features, dim=1)
    k = min(k, train_features.size(0))
    scores = []
    for chunk in test_features.split(chunk_size):
        if distance_fx == "cosine":
            similarity = chunk @ train_features.T
        else:
            similarity = 1.0 / (torch.cdist(chunk, train_features) + epsilon)
        top_similarity, top_index = similarity.topk(k, dim=1)
        # fp64 votes: exp(s / T) overflows fp32 from T ~ 0.011 (solo-learn's does too).
        top_similarity = top_similarity.double()
        weights = (top_similarity / T).exp() if distance_fx == "cosine" else top_similarity
        chunk_scores = torch.zeros(
            chunk.size(0), num_classes, device=chunk.device, dtype=torch.float64
        )
        scores.append(chunk_scores.scatter_add_(1, train_targets[top_index], weights))
    return torch.cat(scores)


class WeightedKNNClassifier(Metric):
    """Memory banks of train and test features; ``compute`` gives k-NN accuracy @1 and @5 (%).

    ``update`` takes train features/targets, test features/targets, or both. ``compute`` returns
    ``(-1, -1)`` while either bank is empty and leaves the banks in place: call ``reset``.
    """

    full_state_update = False

    def __init__(
        self,
        k: int = 20,
        T: float = 0.07,
        max_distance_matrix_size: int = int(5e6),
        distance_fx: str = "cosine",
        epsilon: float = 1e-5,
        dist_sync_on_step: bool = False,
    ) -> None:
        super().__init__(dist_sync_on_step=dist_sync_on_step)
        if distance_fx not in DISTANCES:
            raise ValueError(f"knn distance_fx must be one of {DISTANCES}, got {distance_fx!r}")
        if k < 1 or T <= 0:
            raise ValueError(f"knn needs k >= 1 and T > 0, got k={k}, T={T}")
        self.k = k
        self.T = T
        self.max_distance_matrix_size = max_distance_matrix_size
        self.distance_fx = distance_fx
        self.epsilon = epsilon
        for name in ("train_features", "train_targets", "test_features", "test_targets"):
            self.add_state(name, default=[], dist_reduce_fx="cat", persistent=False)

    def update(
        self,
        train_features: Tensor | None = None,
        train_targets: Tensor | None = None,
        test_features: Tensor | None = None,
        test_targets: Tensor | None = None,
    ) -> None:
        """Append a batch of train and/or test features with their integer targets."""
        for split, features, targets in (
            ("train", train_features, train_targets),
            ("test", test_features, test_targets),
        ):
            if (features is None) != (targets is None):
                raise ValueError(f"knn update needs both {split}_features and {split}_targets")
            if features is None:
                continue
            if features.size(0) != targets.size(0):
                raise ValueError(
                    f"knn {split}_features has {features.size(0)} rows but {split}_targets "
                    f"has {targets.size(0)}"
                )
            getattr(self, f"{split}_features").append(features.detach())
            getattr(self, f"{split}_targets").append(targets.detach())

    @torch.no_grad()
    def compute(self) -> tuple[float, float]:
        """``(acc@1, acc@5)`` in percent of the test bank classified against the train bank."""
        # Lists on one process; after a DDP sync torchmetrics has concatenated them to tensors.
        if any(len(bank) == 0 for bank in (self.train_features, self.test_features)):
            return -1.0, -1.0
        train_features = dim_zero_cat(self.train_features).float()
        train_targets = dim_zero_cat(self.train_targets).long()
        test_features = dim_zero_cat(self.test_features).float()
        test_targets = dim_zero_cat(self.test_targets).long()
        if train_features.size(0) == 0 or test_features.size(0) == 0:
            return -1.0, -1.0  # only empty batches (e.g. every sample unlabelled): no estimate
        num_classes = int(max(train_targets.max(), test_targets.max())) + 1
        scores = knn_class_scores(
            train_features,
            train_targets,
            test_features,
            num_classes,
            k=self.k,
            distance_fx=self.distance_fx,
            T=self.T,
            epsilon=self.epsilon,
            chunk_size=max(1, self.max_distance_matrix_size // train_features.size(0)),
        )
        top_scores, top = scores.topk(min(5, self.k, num_classes), dim=1)
        hits = (top == test_targets[:, None]) & (top_scores > 0)
        top1 = hits[:, 0].float().mean().item() * 100.0
        top5 = hits.any(dim=1).float().mean().item() * 100.0
        return top1, top5
