"""ResNet backbones (widths, CIFAR stem) and the weighted k-NN against a brute-force reference."""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch
from omegaconf import OmegaConf
from torchvision import models

from solo_sqsp.metrics.knn_classifier import WeightedKNNClassifier, knn_class_scores
from solo_sqsp.models.backbones import build_backbone, uses_cifar_stem


def layer4_size(backbone: torch.nn.Module, resolution: int) -> tuple[int, int]:
    shapes = []
    handle = backbone.layer4.register_forward_hook(lambda m, i, out: shapes.append(out.shape))
    backbone.eval()
    with torch.no_grad():
        backbone(torch.zeros(1, 3, resolution, resolution))
    handle.remove()
    return tuple(shapes[0][-2:])


@pytest.mark.parametrize(("name", "width"), [("resnet18", 512), ("resnet50", 2048)])
def test_backbone_widths_and_cifar_stem(name: str, width: int):
    backbone, features_dim = build_backbone(name, cifar_stem=True)
    assert features_dim == width
    assert backbone(torch.randn(2, 3, 32, 32)).shape == (2, width)
    assert backbone.conv1.kernel_size == (3, 3) and backbone.conv1.stride == (1, 1)
    assert isinstance(backbone.maxpool, torch.nn.Identity)
    assert layer4_size(backbone, 32) == (4, 4)

    imagenet_style, _ = build_backbone(name, cifar_stem=False)
    assert imagenet_style.conv1.kernel_size == (7, 7)
    assert layer4_size(imagenet_style, 32) == (1, 1)


def test_backbone_keeps_torchvision_names_and_kwargs():
    backbone, _ = build_backbone("resnet18", cifar_stem=True, zero_init_residual=True)
    expected = {k for k in models.resnet18().state_dict() if not k.startswith("fc.")}
    assert set(backbone.state_dict()) == expected
    assert all(torch.all(block.bn2.weight == 0) for block in backbone.layer1)
    with pytest.raises(ValueError, match="vit_small"):
        build_backbone("vit_small")


@pytest.mark.parametrize(
    ("dataset", "override", "expected"),
    [
        ("cifar10", None, True),
        ("cifar100", None, True),
        ("digits", None, True),
        ("stl10", None, False),
        ("imagenet100", None, False),
        ("custom", True, True),
        ("cifar10", False, False),
    ],
)
def test_cifar_stem_choice(dataset: str, override: bool | None, expected: bool):
    cfg = OmegaConf.create({"data": {"dataset": dataset}, "backbone": {"cifar_stem": override}})
    assert uses_cifar_stem(cfg) is expected


def brute_force_knn(train_x, train_y, test_x, k, distance, T, epsilon=1e-5):
    """Per test sample: sort all training samples, vote with the k nearest, one at a time."""
    all_scores = []
    for query in test_x.tolist():
        similarity = []
        for row in train_x.tolist():
            if distance == "cosine":
                dot = sum(a * b for a, b in zip(query, row, strict=True))
                norms = math.sqrt(sum(a * a for a in query)) * math.sqrt(sum(b * b for b in row))
                similarity.append(dot / norms)
            else:
                similarity.append(1 / (math.dist(query, row) + epsilon))
        nearest = sorted(range(len(similarity)), key=lambda i: -similarity[i])[:k]
        votes: dict[int, float] = defaultdict(float)
        for i in nearest:
            weight = math.exp(similarity[i] / T) if distance == "cosine" else similarity[i]
            votes[int(train_y[i])] += weight
        all_scores.append(votes)
    return all_scores


def accuracies(scores: list[dict[int, float]], test_y) -> tuple[float, float]:
    ranked = [sorted(votes, key=lambda c: -votes[c]) for votes in scores]
    top1 = sum(r[0] == y for r, y in zip(ranked, test_y.tolist(), strict=True)) / len(ranked) * 100
    top5 = sum(y in r[:5] for r, y in zip(ranked, test_y.tolist(), strict=True)) / len(ranked) * 100
    return top1, top5


def clustered(num: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    centers = torch.randn(7, 6, generator=torch.Generator().manual_seed(99))
    labels = torch.randint(0, 7, (num,), generator=generator)
    return centers[labels] + 0.9 * torch.randn(num, 6, generator=generator), labels


@pytest.mark.parametrize(
    ("distance", "T", "k"), [("cosine", 0.07, 7), ("cosine", 2.0, 7), ("euclidean", 0.07, 9)]
)
def test_knn_matches_brute_force(distance: str, T: float, k: int):
    generator = torch.Generator().manual_seed(0)
    train_x, train_y = clustered(80, generator)
    test_x, test_y = clustered(40, generator)
    reference = brute_force_knn(train_x, train_y, test_x, k, distance, T)

    scores = knn_class_scores(train_x, train_y, test_x, 7, k=k, distance_fx=distance, T=T)
    for row, votes in zip(scores, reference, strict=True):
        expected = torch.tensor([votes.get(c, 0.0) for c in range(7)], dtype=torch.float64)
        torch.testing.assert_close(row, expected, rtol=1e-4, atol=1e-6)

    # Fed in several batches, with a tiny distance-matrix budget (3 test rows per chunk).
    knn = WeightedKNNClassifier(k=k, T=T, distance_fx=distance, max_distance_matrix_size=240)
    for part in range(4):
        rows = slice(20 * part, 20 * (part + 1))
        knn.update(train_features=train_x[rows], train_targets=train_y[rows])
        if part < 2:
            knn.update(test_features=test_x[rows], test_targets=test_y[rows])
    top1, top5 = knn.compute()
    expected_top1, expected_top5 = accuracies(reference, test_y)
    assert top1 == pytest.approx(expected_top1) and top5 == pytest.approx(expected_top5)
    assert 30 < top1 < 100  # neither trivial nor chance (1/7)


def test_temperature_and_inverse_distance_weighting_decide_the_vote():
    """One close neighbour of class 0 against two farther ones of class 1 (k = 3)."""
    angles = torch.tensor([0.0, 40.0, 40.0, 10.0]) * math.pi / 180
    points = torch.stack([angles.cos(), angles.sin()], dim=1)
    train_x, train_y = points[:3], torch.tensor([0, 1, 1])
    test_x, test_y = points[3:], torch.tensor([0])

    def top1(distance: str, T: float) -> float:
        knn = WeightedKNNClassifier(k=3, T=T, distance_fx=distance)
        knn.update(train_x, train_y, test_x, test_y)
        return knn.compute()[0]

    assert top1("cosine", 0.07) == 100.0  # sharp weights: the closest sample wins
    assert top1("cosine", 1.0) == 0.0  # flat weights: the majority wins
    assert top1("euclidean", 0.07) == 100.0  # 1/0.17 > 2/0.52


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_knn_edge_cases_and_errors():
    knn = WeightedKNNClassifier(k=3)
    assert knn.compute() == (-1.0, -1.0)
    knn.update(train_features=torch.randn(4, 2), train_targets=torch.tensor([0, 1, 0, 1]))
    assert knn.compute() == (-1.0, -1.0)  # no test bank yet
    knn.update(test_features=torch.randn(2, 2), test_targets=torch.tensor([0, 1]))
    assert knn.compute()[0] >= 0
    knn.reset()
    assert knn.compute() == (-1.0, -1.0)
    # A bank of empty batches (synthetic-only training: every sample unlabelled) is no estimate.
    knn.update(train_features=torch.empty(0, 2), train_targets=torch.empty(0))
    knn.update(test_features=torch.randn(2, 2), test_targets=torch.tensor([0, 1]))
    assert knn.compute() == (-1.0, -1.0)
    knn.reset()
    with pytest.raises(ValueError, match="train_targets"):
        knn.update(train_features=torch.randn(4, 2))
    with pytest.raises(ValueError, match="has 4 rows but test_targets has 3"):
        knn.update(test_features=torch.randn(4, 2), test_targets=torch.zeros(3))
    with pytest.raises(ValueError, match="distance_fx"):
        WeightedKNNClassifier(distance_fx="manhattan")


def test_small_temperatures_do_not_overflow():
    """exp(s / T) passes fp32's range from T ~ 0.011: the votes stay finite and correct."""
    generator = torch.Generator().manual_seed(0)
    train_x, train_y = clustered(80, generator)
    test_x, _ = clustered(40, generator)
    scores = knn_class_scores(train_x, train_y, test_x, 7, k=50, distance_fx="cosine", T=0.005)
    assert torch.isfinite(scores).all()
    reference = brute_force_knn(train_x, train_y, test_x, 1, "cosine", 0.07)
    nearest = torch.tensor([max(votes, key=votes.get) for votes in reference])
    assert (scores.argmax(dim=1) == nearest).float().mean() > 0.9
