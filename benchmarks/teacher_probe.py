"""What does a digits teacher's features encode? The digit class against the rendering's nuisances.

Squeeze regresses a generator's pooled block features (paper, Eq. 3-5); they teach the student
what they encode. For ``--samples`` teacher samples, drawn as the ``sqsp`` teacher draws them
(random noise, no truncation), targets are read off each image: the digit class (the supervised
classifier of ``teacher_quality.py``, on the samples it labels with confidence > 0.9), the
background and foreground colours, the fg/bg polarity, the digit's position (foreground centroid)
and size (square root of its area). Every feature set (pixels; ``w``; each synthesis block pooled
as Squeeze sees it and unpooled, reduced by PCA; the pooled blocks together, Squeeze's input) is
probed with 5-fold cross-validated linear models: logistic accuracy for class and polarity,
ridge R2 for the rest. Also: the share of the pooled target's variance (standardised dims) that
class, colours and geometry each explain. ``--student RUN_DIR`` (a finished ``sqsp`` run of this
teacher) adds what its squeeze module makes of the features (``h``) and what its student predicts
(``z``, from the images as its probes read them). Examples:
    python benchmarks/teacher_probe.py bundled:digits_teacher.pt --out probe.json
    python benchmarks/teacher_probe.py bundled:digits_teacher.pt --student table_runs/<run dir>
    python benchmarks/teacher_probe.py bundled:digits_teacher.pt --untrained --out control.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from digits_floors import grayscale, normalised
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from table_rows import load_trained_method
from teacher_quality import CONFIDENT, Judge, quantise
from torch import nn

from solo_sqsp.data.digits import LUMINANCE, NUM_CLASSES
from solo_sqsp.teachers.adapter import feature_tensor, pool_feature, select_feature_modules
from solo_sqsp.teachers.loading import resolve_teacher_path
from solo_sqsp.teachers.network_pickle import load_teacher_checkpoint
from solo_sqsp.teachers.stylegan2 import Generator

BLOCKS = r"synthesis\.b\d+$"  # the sqsp digits configs' method_kwargs.teacher.features
MAPPING = "mapping"
PCA_DIMS = 256
FOLDS = 5
CLASS_TARGETS = ("class", "polarity")
REGRESSION_TARGETS = ("background colour", "foreground colour", "position", "size")
TARGETS = CLASS_TARGETS + REGRESSION_TARGETS
DESCRIPTORS = {
    "class": ("class",),
    "colours": ("background colour", "foreground colour"),
    "geometry": ("position", "size"),
    "colours and geometry": ("background colour", "foreground colour", "position", "size"),
    "all": ("class", "background colour", "foreground colour", "position", "size"),
}
MIN_LEGIBLE = 10 * FOLDS  # fewer confidently classified samples: no class column


def image_targets(images: np.ndarray) -> dict[str, np.ndarray]:
    """Nuisances read off uint8 NHWC images: the background is the median of the 1-px border,
    the foreground the pixels whose luminance differs from it by more than half the image's
    largest difference. Colours in [0, 1]; position (row, column) and size in pixels."""
    x = images.astype(np.float64) / 255
    size = x.shape[1]
    border = np.concatenate([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)
    background = np.median(border, axis=1)
    difference = (x - background[:, None, None]) @ LUMINANCE
    foreground = np.abs(difference) > 0.5 * np.abs(difference).max(axis=(1, 2), keepdims=True)
    area = foreground.sum(axis=(1, 2))
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    position = np.stack(
        [(foreground * rows).sum(axis=(1, 2)) / area, (foreground * cols).sum(axis=(1, 2)) / area],
        axis=1,
    )
    foreground_colour = (foreground[..., None] * x).sum(axis=(1, 2)) / area[:, None]
    return {
        "polarity": (difference * foreground).sum(axis=(1, 2)) > 0,  # light digit on dark
        "background colour": background,
        "foreground colour": foreground_colour,
        "position": position,
        "size": np.sqrt(area),
    }


@torch.no_grad()
def sample_features(
    generator: nn.Module, count: int, seed: int, batch: int = 250
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``count`` samples (uint8 NHWC) and per sample: ``w``, every block pooled and unpooled."""
    blocks = select_feature_modules(generator, BLOCKS)
    modules = dict(generator.named_modules())
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        modules[name].register_forward_hook(
            lambda module, inputs, output, name=name: captured.__setitem__(
                name, feature_tensor(output)
            )
        )
        for name in [MAPPING, *blocks]
    ]
    rng = torch.Generator().manual_seed(seed)
    images, features = [], {}
    try:
        with torch.random.fork_rng():
            torch.manual_seed(seed)  # the synthesis noise
            for chunk in torch.arange(count).split(batch):
                z = torch.randn(len(chunk), generator.z_dim, generator=rng)
                images.append(quantise(generator(z, None, noise_mode="random")))
                parts = {"w": pool_feature(captured[MAPPING])}
                for name in blocks:
                    short = name.split(".")[-1]
                    parts[f"{short} pooled"] = pool_feature(captured[name])
                    parts[f"{short} unpooled"] = captured[name].flatten(1)
                for key, value in parts.items():
                    features.setdefault(key, []).append(value.numpy())
    finally:
        for hook in hooks:
            hook.remove()
    return np.concatenate(images), {key: np.concatenate(v) for key, v in features.items()}


def feature_sets(images: np.ndarray, teacher: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The probed sets: pixels, ``w``, the pooled blocks (each and together, Squeeze's input),
    each block unpooled (PCA to ``PCA_DIMS``, fitted on all samples: it sees no target)."""
    pixels = images.reshape(len(images), -1).astype(np.float64) / 255
    pooled = [key for key in teacher if key.endswith("pooled") and "unpooled" not in key]
    sets = {
        "RGB pixels": pixels,
        "grayscale pixels": (images.astype(np.float64) / 255 @ LUMINANCE).reshape(len(images), -1),
        "w": teacher["w"],
        **{key: teacher[key] for key in pooled},
        "pooled blocks together": np.concatenate([teacher[key] for key in pooled], axis=1),
    }
    for key in teacher:
        if key.endswith("unpooled"):
            dims = min(PCA_DIMS, teacher[key].shape[1], len(images))
            sets[f"{key} (PCA {dims})"] = PCA(dims, random_state=0).fit_transform(teacher[key])
    return sets


@torch.no_grad()
def student_sets(
    run_dir: Path, images: np.ndarray, teacher: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """A finished ``sqsp`` run's squeezed target ``h`` of the samples' pooled blocks (its
    squeeze module, Eq. 6) and its student's projection ``z`` of the images."""
    model, cfg = load_trained_method(run_dir)
    blocks = [f"{name.split('.')[-1]} pooled" for name in model.teacher.feature_names]
    if any(block not in teacher for block in blocks):
        raise SystemExit(
            f"--student {run_dir}: its teacher features {model.teacher.feature_names} are not "
            f"the probed blocks ({BLOCKS})"
        )
    h = model.squeeze([torch.from_numpy(teacher[block]) for block in blocks])
    views = grayscale(images) if cfg.data.get("eval_grayscale") else images
    z = torch.cat([model(chunk)["z"] for chunk in normalised(views).split(500)])
    return {"squeezed target h": h.numpy(), "student z": z.numpy()}


def check_student(run_dir: Path, teacher: str, untrained: bool) -> None:
    """Refuse, before any work, a ``--student`` that is not a finished ``sqsp`` run of
    ``teacher`` (its squeeze module only makes sense of that teacher's trained features)."""
    config = run_dir / "args.json"
    if not config.is_file() or not (run_dir / "last.ckpt").is_file():
        raise SystemExit(f"--student {run_dir}: not a finished run (no args.json and last.ckpt)")
    if untrained:
        raise SystemExit("--student and --untrained: the run's squeeze module saw trained features")
    cfg = json.loads(config.read_text())
    if cfg.get("method") != "sqsp":
        raise SystemExit(f"--student {run_dir}: a {cfg.get('method')} run has no squeeze module")
    used = cfg["method_kwargs"]["teacher"]["path"]
    if Path(resolve_teacher_path(used)).resolve() != Path(resolve_teacher_path(teacher)).resolve():
        raise SystemExit(f"--student {run_dir}: trained with teacher {used!r}, not {teacher!r}")


def probe(features: np.ndarray, target: np.ndarray, classify: bool, seed: int) -> float:
    """5-fold cross-validated accuracy (%) of a logistic probe, or R2 of a ridge probe."""
    if classify:
        model = LogisticRegression(max_iter=2000)
        folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
        scoring = "accuracy"
    else:
        model = RidgeCV(alphas=np.logspace(-2, 4, 7))
        folds = KFold(FOLDS, shuffle=True, random_state=seed)
        scoring = "r2"
    pipeline = make_pipeline(StandardScaler(), model)
    score = cross_val_score(pipeline, features, target, cv=folds, scoring=scoring).mean()
    return float(100 * score if classify else score)


def one_hot(labels: np.ndarray) -> np.ndarray:
    return np.eye(NUM_CLASSES)[labels]


def explained_variance(
    target: np.ndarray, targets: dict[str, np.ndarray], seed: int
) -> dict[str, float]:
    """Cross-validated R2 of the standardised ``target`` dims (mean over dims) from each group of
    descriptors (``DESCRIPTORS``): how much of what Squeeze regresses each explains."""
    columns = {
        key: value.reshape(len(target), -1).astype(np.float64) for key, value in targets.items()
    }
    if "class" in columns:
        columns["class"] = one_hot(targets["class"])
    standard = StandardScaler().fit_transform(target)
    return {
        group: probe(np.concatenate([columns[key] for key in keys], axis=1), standard, False, seed)
        for group, keys in DESCRIPTORS.items()
        if all(key in columns for key in keys)
    }


def run_probe(
    generator: nn.Module, judge: Judge, samples: int, seed: int, student: Path | None = None
) -> dict[str, Any]:
    """Every feature set against every target, and the pooled target's variance decomposition.
    Every target is scored on the samples the classifier labels with confidence > 0.9, so the
    columns compare like with like; with fewer than ``MIN_LEGIBLE`` of them (an untrained
    generator), on all samples and without the class."""
    images, teacher = sample_features(generator, samples, seed)
    with torch.no_grad():
        probabilities = judge.classifier(normalised(images)).softmax(1).numpy()
    confident = probabilities.max(1) > CONFIDENT
    legible = int(confident.sum()) >= MIN_LEGIBLE
    kept_rows = confident if legible else np.ones_like(confident)
    targets = {"class": probabilities.argmax(1), **image_targets(images)}
    kept = {key: value[kept_rows] for key, value in targets.items() if legible or key != "class"}
    sets = feature_sets(images, teacher)
    if student is not None:
        sets.update(student_sets(student, images, teacher))
    sets = {key: value[kept_rows] for key, value in sets.items()}
    scores = {
        name: {
            target: probe(features, kept[target], target in CLASS_TARGETS, seed)
            for target in TARGETS
            if target in kept
        }
        for name, features in sets.items()
    }
    return {
        "samples": samples,
        "confident": int(confident.sum()),
        "probed": int(kept_rows.sum()),
        "class_counts": np.bincount(targets["class"][confident], minlength=NUM_CLASSES).tolist(),
        "light_digit_share": float(kept["polarity"].mean()),
        "dims": {name: int(features.shape[1]) for name, features in sets.items()},
        "scores": scores,
        "variance_explained": {
            name: explained_variance(sets[name], kept, seed)
            for name in ("pooled blocks together", "squeezed target h", "student z")
            if name in sets
        },
        **({"student": agreement(sets, student)} if student is not None else {}),
    }


def agreement(sets: dict[str, np.ndarray], run_dir: Path) -> dict[str, Any]:
    """How far the student matches its target: per-dim variance of ``h`` and ``z``, and the R2
    of ``h`` by ``z`` as it stands (1 - squeeze MSE / variance of ``h``; no fitted map)."""
    h, z = sets["squeezed target h"], sets["student z"]
    residual = np.square(h - z).sum() / np.square(h - h.mean(0)).sum()
    return {
        "run": run_dir.name,
        "h_variance": float(h.var(0).mean()),
        "z_variance": float(z.var(0).mean()),
        "h_r2_by_z": float(1 - residual),
    }


def markdown(result: dict[str, Any]) -> str:
    targets = [t for t in TARGETS if t in next(iter(result["scores"].values()))]
    header = "| features | dims | " + " | ".join(
        f"{t} ({'acc %' if t in CLASS_TARGETS else 'R2'})" for t in targets
    )
    lines = [header + " |", "|---" * (len(targets) + 2) + "|"]
    for name, scores in result["scores"].items():
        cells = [f"{scores[t]:.1f}" if t in CLASS_TARGETS else f"{scores[t]:.2f}" for t in targets]
        lines.append(f"| {name} | {result['dims'][name]} | " + " | ".join(cells) + " |")
    groups = list(next(iter(result["variance_explained"].values())))
    lines += [
        "",
        "| share of the variance (CV R2) explained by | " + " | ".join(groups) + " |",
        "|---" * (len(groups) + 1) + "|",
    ]
    for name, explained in result["variance_explained"].items():
        lines.append(f"| {name} | " + " | ".join(f"{explained[g]:.2f}" for g in groups) + " |")
    if "student" in result:
        fit = result["student"]
        lines.append(
            f"\n{fit['run']}: per-dim variance h {fit['h_variance']:.3f}, "
            f"z {fit['z_variance']:.3f}; R2 of h by z {fit['h_r2_by_z']:.2f}"
        )
    return "\n".join(lines)


def heatmap(result: dict[str, Any], path: Path, title: str) -> None:
    """Feature sets x targets, every score on [0, 1] (accuracies / 100; chance marked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["scores"])
    targets = [t for t in TARGETS if t in result["scores"][names[0]]]
    values = np.array(
        [
            [result["scores"][n][t] / (100 if t in CLASS_TARGETS else 1) for t in targets]
            for n in names
        ]
    )
    figure, axes = plt.subplots(figsize=(9, 0.45 * len(names) + 1.8))
    image = axes.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
    axes.set_xticks(range(len(targets)), [t.replace(" ", "\n") for t in targets])
    axes.set_yticks(range(len(names)), names)
    for (row, col), value in np.ndenumerate(values):
        colour = "k" if value > 0.6 else "w"
        axes.text(col, row, f"{value:.2f}", ha="center", va="center", color=colour, fontsize=8)
    figure.colorbar(image, label="accuracy (class, polarity) or R2 (the rest)")
    axes.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("teacher", help="teacher checkpoint, e.g. bundled:digits_teacher.pt")
    parser.add_argument("--untrained", action="store_true", help="probe random weights instead")
    parser.add_argument("--student", type=Path, help="a finished sqsp run of this teacher")
    parser.add_argument("--samples", type=int, default=3000)
    parser.add_argument("--judge-epochs", type=int, default=15, help="classifier epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--out", help="JSON results (also <stem>.md and <stem>.png)")
    args = parser.parse_args()
    if args.samples < 10 * FOLDS:
        parser.error(f"--samples must be at least {10 * FOLDS}")
    if args.student is not None:
        check_student(args.student, args.teacher, args.untrained)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    generator = load_teacher_checkpoint(resolve_teacher_path(args.teacher))
    if args.untrained:
        torch.manual_seed(args.seed)
        generator = Generator(**generator.init_kwargs)
    judge = Judge.train(args.judge_epochs, args.seed)
    result = {
        **run_probe(generator.eval(), judge, args.samples, args.seed, args.student),
        "settings": {**vars(args), "student": str(args.student)},
    }
    table = markdown(result)
    title = f"{'untrained ' if args.untrained else ''}{args.teacher}: what its features encode"
    print(
        f"{title}\n{result['confident']} of {args.samples} samples confidently classified, "
        f"{result['probed']} probed "
        f"(classifier val top-1 {judge.val_top1:.1f}%), {time.perf_counter() - start:.0f} s\n"
        f"\n{table}"
    )
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps(result, indent=2))
        out.with_suffix(".md").write_text(f"{title}\n\n{table}\n")
        heatmap(result, out.with_suffix(".png"), title)


if __name__ == "__main__":
    main()
