"""2-D embeddings of teacher samples, coloured by class (paper Fig. 2): the generator's pooled
block features (Fig. 2c), the latent ``w`` (Fig. 2b) and, given a student checkpoint, its
backbone features. UMAP if installed, else t-SNE; differences from the paper:
docs/architecture.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from torch import Tensor

from solo_sqsp.analysis.samples import analysis_teacher, draw_samples
from solo_sqsp.analysis.student import Student, load_student
from solo_sqsp.metrics.knn_classifier import knn_class_scores

Method = Literal["auto", "umap", "tsne"]
METHODS: tuple[Method, ...] = ("auto", "umap", "tsne")
KNN_K = 20
KNN_TEMPERATURE = 0.07  # solo_sqsp.metrics.knn_classifier's default
TSNE_PCA_DIM = 50


@dataclass(frozen=True)
class Panel:
    """One representation's 2-D coordinates ``(n, 2)`` and the panel title."""

    key: str
    title: str
    coords: np.ndarray


def resolve_method(method: Method) -> Literal["umap", "tsne"]:
    """``auto``: UMAP when ``umap`` is importable, else t-SNE."""
    if method not in METHODS:
        raise ValueError(f"embedding method {method!r} is unknown; use one of {METHODS}")
    has_umap = importlib.util.find_spec("umap") is not None
    if method == "umap" and not has_umap:
        raise ValueError("--method umap needs umap-learn (pip install umap-learn); or use tsne")
    if method == "auto":
        return "umap" if has_umap else "tsne"
    return method


def embed_2d(features: Tensor, method: Literal["umap", "tsne"], seed: int) -> np.ndarray:
    """``(n, 2)`` coordinates of ``(n, d)`` features, deterministic given ``seed``."""
    points = features.double().numpy()
    if len(points) < 4:
        raise ValueError(f"a 2-D embedding needs at least 4 samples, got {len(points)}")
    if method == "umap":
        import umap

        return umap.UMAP(n_components=2, random_state=seed).fit_transform(points)
    if points.shape[1] > TSNE_PCA_DIM and len(points) > TSNE_PCA_DIM:
        points = PCA(TSNE_PCA_DIM, random_state=seed).fit_transform(points)
    perplexity = min(30.0, (len(points) - 1) / 3)
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    return tsne.fit_transform(points)


def knn_pseudo_labels(
    student: Student,
    features: Tensor,
    train_path: str | None,
    num_labelled: int | None,
    seed: int,
) -> tuple[Tensor, float | None]:
    """Classes of samples from their student ``features``: weighted k-NN (k=20, cosine) against
    the student's features of the labelled train split (``num_labelled`` random images of it,
    all when None). Also returns the same k-NN's top-1 accuracy (%) on the real validation split
    (at most ``num_labelled`` images of it; None when the dataset has none): how far the labels
    can be trusted."""
    train = student.labelled_split("train", train_path)
    indices = None
    if num_labelled is not None and num_labelled < len(train):
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
        indices = order[:num_labelled]
    bank, targets = student.split_features(train, indices)
    num_classes = int(targets.max()) + 1

    def classify(queries: Tensor) -> Tensor:
        scores = knn_class_scores(bank, targets, queries, num_classes, k=KNN_K, T=KNN_TEMPERATURE)
        return scores.argmax(dim=1)

    val = student.labelled_split("val", train_path)
    accuracy = None
    if val is not None:
        val_indices = None
        if num_labelled is not None and num_labelled < len(val):
            val_indices = torch.randperm(len(val), generator=torch.Generator().manual_seed(seed))
            val_indices = val_indices[:num_labelled]
        val_features, val_targets = student.split_features(val, val_indices)
        accuracy = (classify(val_features) == val_targets).double().mean().item() * 100
    return classify(features), accuracy


def plot_panels(panels: list[Panel], labels: np.ndarray, out: Path) -> None:
    """One scatter per panel, points coloured by class (-1: unknown, grey), a shared legend."""
    fig = Figure(figsize=(4.5 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)
    classes = sorted(set(labels.tolist()))
    colours = matplotlib.colormaps["tab10" if len(classes) <= 10 else "tab20"]
    handles = {}
    for ax, panel in zip(axes[0], panels, strict=True):
        for index, label in enumerate(classes):
            chosen = labels == label
            colour = "0.6" if label < 0 else colours(index % colours.N)
            handles[label] = ax.scatter(
                *panel.coords[chosen].T, s=6, alpha=0.7, color=colour, linewidths=0
            )
        ax.set_title(panel.title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    names = ["unknown" if label < 0 else str(label) for label in classes]
    fig.legend(
        [handles[label] for label in classes],
        names,
        loc="lower center",
        ncol=min(len(classes), 10),
        markerscale=3,
        title="class",
    )
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)


def run_embedding(
    teacher: str | Path,
    out: str | Path,
    checkpoint: str | Path | None = None,
    num_samples: int = 1000,
    method: Method = "auto",
    seed: int = 0,
    device: str = "cpu",
    train_path: str | None = None,
    num_labelled: int | None = None,
    batch_size: int = 256,
) -> dict[str, Any]:
    """Draw ``num_samples`` teacher samples, embed each representation in 2-D, write the PNG
    ``out`` and the coordinates and labels to ``out`` with suffix ``.npz``; return a summary."""
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out {out}: expected a .png file name")
    reducer = resolve_method(method)
    student = load_student(checkpoint, device) if checkpoint is not None else None
    generator_teacher = analysis_teacher(teacher, with_latent=True, device=device)
    samples = draw_samples(
        generator_teacher,
        num_samples,
        seed,
        crop_size=student.crop_size if student else None,
        normalization=student.normalization if student else None,
        batch_size=batch_size,
        grayscale=bool(student and student.grayscale),
    )
    representations = {
        "generator_features": ("generator features", samples.generator_features),
        "latent_w": ("latent w", samples.latents),
    }
    knn_accuracy = None
    if student is not None:
        student_features = student.features(samples.views, batch_size)
        representations["student_features"] = ("student features", student_features)
    if generator_teacher.c_dim:
        labels, label_source = samples.classes, "sampled class"
    elif student is not None:
        labels, knn_accuracy = knn_pseudo_labels(
            student, student_features, train_path, num_labelled, seed
        )
        label_source = f"student {KNN_K}-NN class" + (
            f" (real val acc {knn_accuracy:.0f}%)" if knn_accuracy is not None else ""
        )
    else:
        labels, label_source = samples.classes, "no labels (unconditional, no --checkpoint)"
    panels = [
        Panel(
            key, f"{title} ({reducer})\ncolour: {label_source}", embed_2d(features, reducer, seed)
        )
        for key, (title, features) in representations.items()
    ]
    label_array = labels.numpy()
    plot_panels(panels, label_array, out)
    coordinates = out.with_suffix(".npz")
    np.savez(
        coordinates,
        labels=label_array,
        label_source=np.array(label_source),
        method=np.array(reducer),
        **{panel.key: panel.coords for panel in panels},
    )
    return {
        "png": str(out),
        "coordinates": str(coordinates),
        "method": reducer,
        "num_samples": num_samples,
        "panels": [panel.key for panel in panels],
        "label_source": label_source,
        "knn_val_accuracy": knn_accuracy,
        "class_counts": {
            int(k): int(v) for k, v in zip(*np.unique(label_array, return_counts=True), strict=True)
        },
        "teacher": str(teacher),
        "checkpoint": str(student.backbone.checkpoint) if student else None,
        "seed": seed,
    }
