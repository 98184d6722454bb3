"""Quality of a teacher generator of the embedded digits: Frechet distance and class coverage.

A small CNN is trained with labels on the digits' training split (seeded, about a minute on one
CPU core); its 128-d pooled penultimate features play the role Inception features play in FID
(Heusel et al. 2017): ``FD = |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` against the
training split. For scale, in one run and with the same number of images each:

- real vs real: the held-out validation split (different source digits, fresh renders): what a
  generator that matched the data distribution would score;
- the teacher's samples (as the teacher adapter draws them: constant noise, no truncation);
- the same architecture untrained (random weights): a generator that learned nothing.

Class coverage: 1,000 samples classified by the CNN; the fraction per class, how many classes get
at least 5%, and the share of samples the CNN calls with confidence > 0.9 (legible digits),
next to the same numbers for the validation split. Example:
    python benchmarks/teacher_quality.py solo_sqsp/assets/digits_teacher.pt --out quality.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from digits_floors import normalised
from torch import Tensor, nn

from solo_sqsp.data.digits import NUM_CLASSES, load_embedded_digits
from solo_sqsp.teachers.loading import resolve_teacher_path
from solo_sqsp.teachers.network_pickle import load_teacher_checkpoint
from solo_sqsp.teachers.stylegan2 import Generator
from solo_sqsp.teachers.training import diff_augment

COVERAGE_THRESHOLD = 0.05
CONFIDENT = 0.9


class DigitClassifier(nn.Module):
    """Five 3x3 conv-BN-ReLU layers (32, 32, 64, 64, 128 channels, two 2x max-pools), global
    average pool -> 128-d ``features``, linear head."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        widths = [3, 32, 32, 64, 64, 128]
        for index, (inp, out) in enumerate(itertools.pairwise(widths)):
            layers += [
                nn.Conv2d(inp, out, 3, padding=1, bias=False),
                nn.BatchNorm2d(out),
                nn.ReLU(),
            ]
            if index in (1, 3):
                layers.append(nn.MaxPool2d(2))
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], NUM_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def train_classifier(images: Tensor, targets: Tensor, epochs: int, seed: int) -> DigitClassifier:
    """Adam (lr 2e-3, cosine), batch 128, random translation by up to 2 px; deterministic."""
    torch.manual_seed(seed)
    model = DigitClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    batch = 128
    steps = epochs * (len(images) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    rng = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=rng)
        for start in range(0, len(images) - batch + 1, batch):
            index = order[start : start + batch]
            x = diff_augment(images[index], ("translation",), rng)
            loss = F.cross_entropy(model(x), targets[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model.eval()


def quantise(images: Tensor) -> np.ndarray:
    """Generator output (NCHW, about [-1, 1]) -> uint8 NHWC, as a saved image would be."""
    x = (images.clamp(-1, 1) + 1) * 127.5
    return x.round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def generate(generator: Generator, count: int, seed: int) -> np.ndarray:
    """``count`` samples as the teacher adapter draws them, quantised to uint8 NHWC."""
    rng = torch.Generator().manual_seed(seed)
    images = []
    for chunk in torch.arange(count).split(256):
        z = torch.randn(len(chunk), generator.z_dim, generator=rng)
        images.append(generator(z, None, noise_mode="const"))
    return quantise(torch.cat(images))


def frechet_distance(a: Tensor, b: Tensor) -> float:
    """FD between Gaussians fitted to feature rows ``a`` and ``b`` (float64; the matrix square
    root through the eigenvalues of the symmetric ``S_a^(1/2) S_b S_a^(1/2)``)."""
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp(min=0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp(min=0).sqrt().sum()
    return float((mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def coverage(probabilities: Tensor) -> dict[str, object]:
    """Per-class fraction of predictions, classes above 5%, share of confident predictions."""
    fractions = torch.bincount(probabilities.argmax(1), minlength=NUM_CLASSES) / len(probabilities)
    return {
        "class_fractions": [round(f, 4) for f in fractions.tolist()],
        "classes_at_least_5pct": int((fractions >= COVERAGE_THRESHOLD).sum()),
        "confident_share": float((probabilities.max(1).values > CONFIDENT).float().mean()),
    }


@dataclass
class Judge:
    """The supervised classifier every teacher is measured with, and the reference features."""

    classifier: DigitClassifier
    train_features: Tensor
    val_x: Tensor
    val_probs: Tensor
    val_top1: float

    @classmethod
    def train(cls, epochs: int, seed: int) -> Judge:
        """Train the classifier on the digits' training split (deterministic in ``seed``)."""
        digits = load_embedded_digits()
        train_x, val_x = normalised(digits.train.images), normalised(digits.val.images)
        train_y, val_y = (
            torch.from_numpy(digits.train.targets),
            torch.from_numpy(digits.val.targets),
        )
        classifier = train_classifier(train_x, train_y, epochs, seed)
        with torch.no_grad():
            val_probs = classifier(val_x).softmax(1)
            train_features = classifier.features(train_x)
        val_top1 = 100 * float((val_probs.argmax(1) == val_y).float().mean())
        return cls(classifier, train_features, val_x, val_probs, val_top1)

    @torch.no_grad()
    def quality(self, teacher_path: str, coverage_samples: int, seed: int) -> dict[str, Any]:
        """FD against the training split of the real val split, the teacher's samples and an
        untrained generator of the same shape (as many images each); class coverage."""
        path = resolve_teacher_path(teacher_path)
        teacher = load_teacher_checkpoint(path)
        torch.manual_seed(seed)
        untrained = Generator(**teacher.init_kwargs).eval()
        count = len(self.val_x)
        candidates = {
            "real val split": self.val_x,
            "teacher": normalised(generate(teacher, count, seed)),
            "untrained generator": normalised(generate(untrained, count, seed)),
        }
        fd = {
            name: frechet_distance(self.train_features, self.classifier.features(images))
            for name, images in candidates.items()
        }
        samples = normalised(generate(teacher, coverage_samples, seed + 1))
        extra = torch.load(path, map_location="cpu", weights_only=True)["extra"]
        return {
            "classifier_val_top1": self.val_top1,
            "fd_vs_train_split": fd,
            "fd_images": count,
            "coverage": {
                "teacher": coverage(self.classifier(samples).softmax(1)),
                "real val split": coverage(self.val_probs),
            },
            "teacher": str(teacher_path),
            "teacher_extra": {
                key: value
                for key, value in extra.items()
                if key in ("iterations", "images_seen", "data")
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teacher", help="teacher checkpoint (save_teacher_checkpoint format)")
    parser.add_argument("--epochs", type=int, default=15, help="classifier training epochs")
    parser.add_argument("--coverage-samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.perf_counter()
    judge = Judge.train(args.epochs, args.seed)
    print(f"classifier: val top-1 {judge.val_top1:.1f}% ({time.perf_counter() - start:.0f} s)")
    result = {
        **judge.quality(args.teacher, args.coverage_samples, args.seed),
        "settings": vars(args),
    }
    print(f"\n{'images vs training split':<26}{'FD':>10}")
    for name, value in result["fd_vs_train_split"].items():
        print(f"{name:<26}{value:>10.2f}")
    for name, cover in result["coverage"].items():
        print(
            f"{name}: classes >= 5%: {cover['classes_at_least_5pct']}/10, confident (>0.9): "
            f"{100 * cover['confident_share']:.0f}%, per class {cover['class_fractions']}"
        )
    if args.out:
        with open(args.out, "w") as stream:
            json.dump(result, stream, indent=2)


if __name__ == "__main__":
    main()
