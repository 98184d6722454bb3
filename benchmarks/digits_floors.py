"""Floors and ceiling of the embedded ``digits`` benchmark, on its validation split.

What a learned representation has to beat, and what it could reach, in one run:

1. raw pixels: weighted k-NN (k=20, cosine, T=0.07, the online k-NN of
   ``solo_sqsp.metrics.knn_classifier``) and a linear classifier (scikit-learn logistic regression
   on standardised features);
2. a randomly initialised ResNet18 with the CIFAR stem: the same two probes on its frozen,
   globally pooled 512-d features;
3. a supervised upper bound: the same ResNet18 trained with labels on the training split
   (Adam, one-cycle schedule, random +-2 px translation), its own head's top-1 and the two probes
   on its features.

Train features come from the training split without augmentation, as in solo-learn's k-NN and
linear evaluation; ``--grayscale`` reads every image in grayscale, as runs with
``data.eval_grayscale`` are evaluated. Example:
    python benchmarks/digits_floors.py --epochs 8 --out digits_floors.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import Tensor, nn

from solo_sqsp.data.digits import NUM_CLASSES, DigitsBuilder, load_embedded_digits
from solo_sqsp.metrics.knn_classifier import knn_class_scores
from solo_sqsp.models.backbones import build_backbone
from solo_sqsp.teachers.training import diff_augment


def grayscale(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB images in grayscale (three equal channels), as the evaluation transform
    reads them with ``data.eval_grayscale`` (torchvision's ``Grayscale(3)`` on PIL images)."""
    return np.stack([np.asarray(Image.fromarray(i).convert("L").convert("RGB")) for i in images])


def normalised(images: np.ndarray) -> Tensor:
    """uint8 NHWC -> float NCHW with the dataset's evaluation normalisation."""
    stats = DigitsBuilder.eval_normalization
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    mean, std = torch.tensor(stats.mean), torch.tensor(stats.std)
    return (x - mean.reshape(1, 3, 1, 1)) / std.reshape(1, 3, 1, 1)


def knn_top1(train: Tensor, train_targets: Tensor, val: Tensor, val_targets: Tensor) -> float:
    """Top-1 (%) of the weighted cosine k-NN (k=20, T=0.07)."""
    scores = knn_class_scores(train, train_targets, val, NUM_CLASSES, k=20, T=0.07)
    return 100 * (scores.argmax(1) == val_targets).float().mean().item()


def linear_top1(train: Tensor, train_targets: Tensor, val: Tensor, val_targets: Tensor) -> float:
    """Top-1 (%) of multinomial logistic regression on standardised features."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    probe.fit(train.numpy(), train_targets.numpy())
    return 100 * float(probe.score(val.numpy(), val_targets.numpy()))


@torch.no_grad()
def features(backbone: nn.Module, images: Tensor, batch: int = 512) -> Tensor:
    backbone.eval()
    return torch.cat([backbone(chunk) for chunk in images.split(batch)])


def train_supervised(
    images: Tensor, targets: Tensor, epochs: int, batch: int, lr: float, seed: int
) -> tuple[nn.Module, nn.Module]:
    """ResNet18 (CIFAR stem) + linear head trained with cross-entropy; Adam with a one-cycle
    learning rate (SGD at lr 0.1 does not get off the ground here), random translation by up to
    2 px."""
    torch.manual_seed(seed)
    backbone, width = build_backbone("resnet18", cifar_stem=True)
    head = nn.Linear(width, NUM_CLASSES)
    parameters = [*backbone.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(parameters, lr=lr)
    steps = epochs * (len(images) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps)
    rng = torch.Generator().manual_seed(seed)
    backbone.train()
    for epoch in range(epochs):
        order = torch.randperm(len(images), generator=rng)
        losses = []
        for start in range(0, len(images) - batch + 1, batch):
            index = order[start : start + batch]
            x = diff_augment(images[index], ("translation",), rng)
            loss = F.cross_entropy(head(backbone(x)), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        print(f"  supervised epoch {epoch + 1}/{epochs}: loss {np.mean(losses):.3f}", flush=True)
    return backbone.eval(), head.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=8, help="supervised training epochs")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument(
        "--grayscale", action="store_true", help="read the images in grayscale (eval_grayscale)"
    )
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    digits = load_embedded_digits()
    train_y = torch.from_numpy(digits.train.targets)
    val_y = torch.from_numpy(digits.val.targets)
    read = grayscale if args.grayscale else np.asarray
    train_x, val_x = normalised(read(digits.train.images)), normalised(read(digits.val.images))
    rows: dict[str, dict[str, float]] = {}

    def probe(name: str, train_features: Tensor, val_features: Tensor, **more: float) -> None:
        start = time.perf_counter()
        rows[name] = {
            "knn_top1": knn_top1(train_features, train_y, val_features, val_y),
            "linear_top1": linear_top1(train_features, train_y, val_features, val_y),
            **more,
        }
        print(f"{name}: {rows[name]} ({time.perf_counter() - start:.0f} s)", flush=True)

    probe("raw pixels", train_x.flatten(1), val_x.flatten(1))
    torch.manual_seed(args.seed)
    random_backbone, _ = build_backbone("resnet18", cifar_stem=True)
    probe(
        "random-init ResNet18",
        features(random_backbone, train_x),
        features(random_backbone, val_x),
    )
    start = time.perf_counter()
    backbone, head = train_supervised(train_x, train_y, args.epochs, args.batch, args.lr, args.seed)
    seconds = time.perf_counter() - start
    train_features, val_features = features(backbone, train_x), features(backbone, val_x)
    with torch.no_grad():
        head_top1 = 100 * (head(val_features).argmax(1) == val_y).float().mean().item()
    probe(
        "supervised ResNet18",
        train_features,
        val_features,
        head_top1=head_top1,
        train_seconds=seconds,
    )

    print(f"\n{'features':<24}{'k-NN top-1':>12}{'linear top-1':>14}")
    for name, row in rows.items():
        print(f"{name:<24}{row['knn_top1']:>11.1f}%{row['linear_top1']:>13.1f}%")
    print(f"supervised head top-1: {head_top1:.1f}% ({args.epochs} epochs, {seconds:.0f} s)")
    if args.out:
        result = {
            "rows": rows,
            "settings": vars(args),
            "train_images": len(train_y),
            "val_images": len(val_y),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "load_average_1min_at_end": os.getloadavg()[0],
        }
        with open(args.out, "w") as stream:
            json.dump(result, stream, indent=2)


if __name__ == "__main__":
    main()
