"""Shared runner of the paper's tables in miniature (``table2.py``, ``table5.py``).

A row is a pretraining config of ``scripts/pretrain/digits/`` (one yaml per row). Every row of a
table trains with the same budget (epochs, batch, projector widths) through ``run_pretrain``,
the code ``main_pretrain.py`` runs, for each seed; then its frozen backbone is loaded with
``solo_sqsp.evaluation.load_frozen_backbone`` and probed on the embedded digits' validation split
with the probes of ``digits_floors.py`` (in grayscale when the rows' ``data.eval_grayscale``
says so): linear top-1 with every training label, linear top-1 with 10 labels per class, and
weighted k-NN top-1 (``solo_sqsp.metrics.knn_classifier``). The mean per-dimension
std of the projector outputs on the validation images (``output_std``: 0 for a collapse to a
constant, about 1 under the variance term) shows collapses (see ``projector_spread``).
Floors (raw pixels, random-init ResNet18, optionally the supervised ceiling) come from
``digits_floors.py``'s functions or its ``--out`` JSON.

Each finished (row, seed) leaves ``result.json`` (its composed config and probe results) in its
run folder under ``--work-dir``; a rerun with the same work dir reuses every run whose config is
unchanged, so an interrupted table resumes at the first unfinished run (``--fresh`` retrains);
``--ledger`` also keeps them in a file that can be committed (``run_ledger.py``). A run whose
loss turns non-finite is a result too: recorded as diverged, left out of its row's means and
counted in its label.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import statistics
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from digits_floors import features, grayscale, knn_top1, linear_top1, normalised
from hydra import compose, initialize_config_dir
from lightning.pytorch.callbacks import Callback
from omegaconf import DictConfig, OmegaConf
from run_ledger import RunLedger
from torch import Tensor

from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.data.digits import NUM_CLASSES, load_embedded_digits
from solo_sqsp.evaluation import load_frozen_backbone
from solo_sqsp.methods import get_method
from solo_sqsp.metrics.collapse import output_std
from solo_sqsp.models.backbones import build_backbone
from solo_sqsp.training.nonfinite import NonFiniteError
from solo_sqsp.training.pretrain import run_dir_for, run_pretrain

CONFIG_DIR = REPO_ROOT / "scripts" / "pretrain" / "digits"
RESULT_FILE = "result.json"
TARGETS = (50, 80)  # k-NN top-1 levels whose time to reach is reported
METRICS = ("linear_top1", "linear10_top1", "knn_top1", "output_std", "output_std_normalized")
SHOWN = {
    "linear_top1": "linear top-1",
    "linear10_top1": "linear top-1 (10/class)",
    "knn_top1": "k-NN top-1",
    "output_std": "output std",
}


@dataclass(frozen=True)
class Row:
    """One table row: its label, its config and what it reports as ``method``/``domain``."""

    label: str
    config: str
    method: str
    domain: str
    overrides: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The config name, plus its overrides' values where it has any (a folder name: other
        characters than letters, digits and ``.+-`` become ``_``, e.g. a deletion ``~key``)."""
        values = [override.split("=", 1)[-1] for override in self.overrides]
        return re.sub(r"[^\w.+-]", "_", "-".join([self.config, *values]))


@dataclass(frozen=True)
class Budget:
    """What every row of a table gets: epochs, batch, seeds, steps cap, evaluation cap. Rows
    train at their own projector widths; ``width`` (smoke runs only) shrinks every hidden and
    output width (kept where a row fixes it, e.g. vanilla distillation)."""

    epochs: int
    batch_size: int
    seeds: tuple[int, ...]
    width: int | None = None
    max_steps: int | None = None
    eval_images: int | None = None
    warmup_fraction: float | None = None
    """Linear warm-up as a share of the run (the rows' own ``scheduler.warmup_epochs`` if None)."""
    extra: tuple[str, ...] = field(default_factory=tuple)


def compose_row(row: Row, budget: Budget, seed: int, out_dir: Path) -> DictConfig:
    """The row's config with the table's budget applied."""
    overrides = [
        f"max_epochs={budget.epochs}",
        f"optimizer.batch_size={budget.batch_size}",
        f"++seed={seed}",
        f"++method_kwargs.seed={seed}",
        f"checkpoint.dir={out_dir}",
        f"checkpoint.frequency={budget.epochs}",  # one checkpoint per run, at the end
        f"++run_id=seed{seed}",
        "knn_eval.enabled=True",  # per-epoch k-NN on clean images: the time-to-accuracy curve
        *budget.extra,
        *row.overrides,
    ]
    if budget.max_steps is not None:
        overrides.append(f"++limit_train_batches={budget.max_steps}")
    if budget.warmup_fraction is not None:
        overrides.append(f"scheduler.warmup_epochs={budget.warmup_fraction * budget.epochs:g}")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.2"):
        cfg = compose(row.config, overrides=overrides)
    OmegaConf.set_struct(cfg, False)
    if budget.width is not None:
        shrink_widths(cfg, budget.width)
    return cfg


def shrink_widths(cfg: DictConfig, width: int) -> None:
    """Every projector, squeeze and predictor width of ``cfg`` set to ``width`` (smoke runs)."""
    kwargs = cfg.method_kwargs
    kwargs.proj_hidden_dim = width
    if cfg.method != "sqsp" or kwargs.squeeze.depth > 0:  # depth 0: the teacher features' width
        kwargs.proj_output_dim = width
    if cfg.method == "sqsp" and kwargs.squeeze.depth > 0:
        kwargs.squeeze.hidden_dim = kwargs.squeeze.out_dim = width
    if cfg.method == "simsiam":
        kwargs.pred_hidden_dim = max(width // 4, 8)


class TrainingClock(Callback):
    """Training wall time (validation excluded) and the online k-NN top-1 after every epoch:
    ``curve`` is a list of ``{"epoch", "train_seconds", "knn_top1"}``."""

    def __init__(self) -> None:
        self.curve: list[dict[str, float]] = []
        self._elapsed = 0.0
        self._since = 0.0

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._since = time.perf_counter()

    def on_validation_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._elapsed += time.perf_counter() - self._since

    def on_validation_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        knn = trainer.callback_metrics.get("val_knn_acc1")
        self.curve.append(
            {
                "epoch": trainer.current_epoch + 1,
                "train_seconds": round(self._elapsed, 1),
                "knn_top1": float(knn) if knn is not None else math.nan,
            }
        )
        self._since = time.perf_counter()


def minutes_to(curve: list[dict[str, float]], accuracy: float) -> float | None:
    """Training minutes until the per-epoch k-NN first reaches ``accuracy`` (None: never)."""
    for point in curve:
        if point["knn_top1"] >= accuracy:
            return round(point["train_seconds"] / 60, 2)
    return None


@dataclass
class EvalData:
    """The embedded digits, normalised for evaluation (optionally a class-stratified prefix)."""

    train_x: Tensor
    train_y: Tensor
    val_x: Tensor
    val_y: Tensor

    @classmethod
    def load(cls, limit: int | None, gray: bool = False) -> EvalData:
        """Both splits (in grayscale with ``gray``); with ``limit``, a fixed random ``limit``
        images of each."""
        digits = load_embedded_digits()
        parts = []
        for split in (digits.train, digits.val):
            images = grayscale(split.images) if gray else split.images
            x, y = normalised(images), torch.from_numpy(split.targets)
            if limit:
                kept = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[:limit]
                x, y = x[kept], y[kept]
            parts += [x, y]
        return cls(*parts)


def few_labels(targets: Tensor, per_class: int, seed: int) -> Tensor:
    """Indexes of ``per_class`` random training samples of every class."""
    rng = torch.Generator().manual_seed(seed)
    chosen = []
    for label in targets.unique():
        members = (targets == label).nonzero().flatten()
        chosen.append(members[torch.randperm(len(members), generator=rng)[:per_class]])
    return torch.cat(chosen)


def probe(train: Tensor, val: Tensor, data: EvalData, seed: int) -> dict[str, float]:
    """Linear (all labels, 10 per class) and k-NN top-1 (%) of frozen features."""
    subset = few_labels(data.train_y, 10, seed)
    return {
        "linear_top1": linear_top1(train, data.train_y, val, data.val_y),
        "linear10_top1": linear_top1(train[subset], data.train_y[subset], val, data.val_y),
        "knn_top1": knn_top1(train, data.train_y, val, data.val_y),
    }


def load_trained_method(run_dir: Path) -> tuple[pl.LightningModule, DictConfig]:
    """The whole method of a finished run (student, heads, squeeze module; the teacher reloaded
    from its config) from its ``args.json`` and ``last.ckpt``, in eval mode, and that config."""
    cfg = OmegaConf.create(json.loads((run_dir / "args.json").read_text()))
    model = get_method(cfg.method)(cfg)
    state = torch.load(run_dir / "last.ckpt", map_location="cpu", weights_only=True)
    model.load_state_dict(state["state_dict"])
    return model.eval(), cfg


@torch.no_grad()
def projector_spread(run_dir: Path, images: Tensor) -> dict[str, float]:
    """Spread of the trained method's projector outputs ``z`` on ``images``: ``output_std``, the
    mean per-dimension std of ``z`` (0 for a collapse to a constant; the variance term keeps it
    near 1), and ``output_std_normalized``, the same of the L2-normalised ``z`` times sqrt(D)
    (SimSiam's monitor: 0 for a collapse to one direction, about 1 when spread out)."""
    model, _ = load_trained_method(run_dir)
    z = torch.cat([model(chunk)["z"] for chunk in images.split(512)])
    return {
        "output_std": float(z.std(dim=0).mean()),
        "output_std_normalized": float(output_std(z)) * math.sqrt(z.shape[1]),
    }


def cached_result(run_dir: Path, composed: Any) -> dict[str, Any] | None:
    """The probe results a finished run of exactly the ``composed`` config left in ``run_dir``,
    else None."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return saved["result"] if saved["config"] == composed else None


def run_row(
    row: Row,
    budget: Budget,
    seed: int,
    data: EvalData,
    out_dir: Path,
    fresh: bool = False,
    ledger: RunLedger | None = None,
) -> dict[str, Any]:
    """Pretrain ``row`` with ``seed``, then probe its frozen backbone (or reuse a finished run
    of the same config from its run folder or the ``ledger``, unless ``fresh``); the ``ledger``
    records every result it did not read from the ledger itself."""
    cfg = compose_row(row, budget, seed, out_dir / row.name)
    planned_dir = run_dir_for(cfg)
    composed = OmegaConf.to_container(cfg)  # before run_pretrain fills in its defaults
    key = f"{row.name}/seed{seed}"
    if not fresh:
        result, source = cached_result(planned_dir, composed), planned_dir / RESULT_FILE
        if result is None and ledger is not None:
            result, source = ledger.result(key, composed), ledger.path
        if result is not None:
            print(f"{row.label} seed {seed}: reused {source}", flush=True)
            if ledger is not None and source != ledger.path:
                ledger.record(key, composed, result)
            return result
    shutil.rmtree(planned_dir, ignore_errors=True)  # a stale last.ckpt would be read below
    clock = TrainingClock()
    try:
        metrics = run_pretrain(cfg, callbacks=[clock])
    except NonFiniteError as error:  # a result too: recorded, and the table goes on
        result = {"seed": seed, "diverged": str(error), "knn_curve": clock.curve}
    else:
        result = probe_run(Path(metrics["run_dir"]), metrics["steps"], clock.curve, data, seed)
    planned_dir.mkdir(parents=True, exist_ok=True)
    record = {"config": composed, "result": result}
    (planned_dir / RESULT_FILE).write_text(json.dumps(record, indent=2))
    if ledger is not None:
        ledger.record(key, composed, result)
    print(f"{row.label} seed {seed}: {result}", flush=True)
    return result


def probe_run(
    run_dir: Path, steps: int, curve: list[dict[str, float]], data: EvalData, seed: int
) -> dict[str, Any]:
    """A finished run's probe results (``probe``, ``projector_spread``) with its training
    steps, k-NN curve and minutes to each k-NN level."""
    frozen = load_frozen_backbone(
        OmegaConf.create({"pretrained_feature_extractor": str(run_dir)})
    ).module
    result = probe(features(frozen, data.train_x), features(frozen, data.val_x), data, seed)
    result.update(projector_spread(run_dir, data.val_x))
    result.update(
        seed=seed,
        steps=steps,
        train_seconds=curve[-1]["train_seconds"] if curve else math.nan,
        knn_curve=curve,
        **{f"minutes_to_{level}": minutes_to(curve, level) for level in TARGETS},
    )
    return result


def summarise(row: Row, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean and std (0 for one seed) over the seeds that did not diverge of every metric, how
    many diverged, plus the per-seed results."""
    summary: dict[str, Any] = {
        "label": row.label,
        "config": row.config,
        "overrides": list(row.overrides),
        "method": row.method,
        "domain": row.domain,
    }
    trained = [run for run in runs if "diverged" not in run]
    summary["diverged"] = len(runs) - len(trained)
    for metric in (*METRICS, "train_seconds"):
        values = [run[metric] for run in trained]
        summary[f"{metric}_mean"] = statistics.fmean(values) if values else math.nan
        summary[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
    for level in TARGETS:
        reached = [run.get(f"minutes_to_{level}") for run in runs]
        summary[f"minutes_to_{level}"] = reached  # per seed; None where never reached
    summary["seeds"] = runs
    return summary


def compute_floors(data: EvalData, seed: int, floors_json: str | None) -> dict[str, Any]:
    """Raw pixels and a random-init ResNet18 probed like every row, plus the rows of
    ``digits_floors.py``'s JSON that these do not cover (the supervised ceiling)."""
    torch.manual_seed(seed)
    random_backbone, _ = build_backbone("resnet18", cifar_stem=True)
    floors = {
        "raw pixels": probe(data.train_x.flatten(1), data.val_x.flatten(1), data, seed),
        "random-init ResNet18": probe(
            features(random_backbone, data.train_x),
            features(random_backbone, data.val_x),
            data,
            seed,
        ),
    }
    if floors_json:
        given = json.loads(Path(floors_json).read_text())["rows"]
        floors.update({name: row for name, row in given.items() if name not in floors})
    return floors


def markdown(
    rows: list[dict[str, Any]], floors: dict[str, Any], first_columns: Sequence[str]
) -> str:
    """The table: one line per row (mean +- std over seeds), then the floors."""
    header = [*first_columns, *SHOWN.values(), *(f"min to {t}% k-NN" for t in TARGETS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def cell(row: dict[str, Any], metric: str) -> str:
        digits = 2 if metric.startswith("output") else 1
        return f"{row[f'{metric}_mean']:.{digits}f} ± {row[f'{metric}_std']:.{digits}f}"

    for row in rows:
        firsts = [row["domain_label"], diverged_label(row)][: len(first_columns)]
        timing = [time_to(row, level) for level in TARGETS]
        lines.append("| " + " | ".join([*firsts, *(cell(row, m) for m in SHOWN), *timing]) + " |")
    for name, floor in floors.items():
        values = [floor.get(m) for m in ("linear_top1", "linear10_top1", "knn_top1")]
        shown = [f"{v:.1f}" if isinstance(v, (int, float)) else "–" for v in values]
        padding = [""] * (len(first_columns) - 1)
        dashes = ["–"] * (1 + len(TARGETS))
        lines.append("| " + " | ".join([*padding, f"floor: {name}", *shown, *dashes]) + " |")
    return "\n".join(lines)


def diverged_label(row: dict[str, Any]) -> str:
    """The row's label, with how many of its seeds diverged where any did."""
    if not row.get("diverged"):
        return row["label"]
    return f"{row['label']} ({row['diverged']} of {len(row['seeds'])} seeds diverged)"


def time_to(row: dict[str, Any], level: int) -> str:
    """Training minutes to ``level``% k-NN per seed, e.g. ``3.1 / 2.9 / –`` (– never)."""
    return " / ".join("–" if m is None else f"{m:.1f}" for m in row[f"minutes_to_{level}"])


def bar_label(row: dict[str, Any]) -> str:
    """``method (domain)``, or the label alone where the domain column repeats it."""
    if row["domain_label"] in ("", row["label"]):
        return diverged_label(row)
    return f"{diverged_label(row)} ({row['domain_label']})"


def bar_plot(rows: list[dict[str, Any]], floors: dict[str, Any], path: Path, title: str) -> None:
    """Grouped bars (linear, linear 10/class, k-NN) with std error bars; floors as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ("linear_top1", "linear10_top1", "knn_top1")
    width = 0.8 / len(metrics)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(rows)), 4))
    for i, metric in enumerate(metrics):
        xs = [j + (i - 1) * width for j in range(len(rows))]
        ax.bar(
            xs,
            [row[f"{metric}_mean"] for row in rows],
            width,
            yerr=[row[f"{metric}_std"] for row in rows],
            label=metric.replace("_top1", "").replace("linear10", "linear 10/class"),
        )
    for name, floor in floors.items():
        if "linear_top1" in floor:
            ax.axhline(floor["linear_top1"], linestyle="--", linewidth=1, color="gray")
            ax.text(len(rows) - 0.5, floor["linear_top1"], f" {name}", fontsize=7, va="bottom")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels([bar_label(row) for row in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("top-1 (%)")
    ax.set_ylim(0, 115)  # headroom for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(textwrap.fill(title, 60), fontsize=9)
    ax.legend(fontsize=8, ncol=len(metrics), loc="upper center")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def parse_args(
    description: str,
    full: Budget,
    quick: Budget,
    add_flags: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[argparse.Namespace, Budget]:
    """Common flags (plus a script's own, ``add_flags``); returns the arguments and the budget
    they select."""
    parser = argparse.ArgumentParser(description=description)
    if add_flags is not None:
        add_flags(parser)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 seed, a few steps")
    parser.add_argument("--epochs", type=int, help=f"pretraining epochs (default {full.epochs})")
    parser.add_argument("--seeds", type=int, nargs="+", help=f"default {list(full.seeds)}")
    parser.add_argument("--max-steps", type=int, help="cap on training steps per epoch")
    parser.add_argument("--rows", nargs="+", help="only these rows (config names)")
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="OVERRIDE",
        help="Hydra overrides for every selected row, e.g. ++method_kwargs.syn_ratio=0.25",
    )
    parser.add_argument("--floors", help="digits_floors.py --out JSON (adds the supervised row)")
    parser.add_argument("--threads", type=int, help="torch intra-op threads")
    parser.add_argument("--work-dir", default="table_runs", help="checkpoints of every run")
    parser.add_argument("--fresh", action="store_true", help="retrain runs finished before")
    parser.add_argument("--ledger", help="JSON file of finished runs to reuse and add to")
    parser.add_argument("--md", help="markdown output (default: <out stem>.md)")
    parser.add_argument("--plot", help="bar plot PNG (default: <out stem>.png)")
    parser.add_argument("--out", help="JSON results")
    args = parser.parse_args()
    budget = quick if args.quick else full
    if args.epochs is not None:
        budget = replace(budget, epochs=args.epochs)
    if args.seeds:
        budget = replace(budget, seeds=tuple(args.seeds))
    if args.max_steps:
        budget = replace(budget, max_steps=args.max_steps)
    if args.threads:
        torch.set_num_threads(args.threads)
    return args, budget


@dataclass(frozen=True)
class Table:
    """What a table script shows: its title, rows, leading columns and each row's label in
    the first of them (the bar plot's too)."""

    title: str
    rows: tuple[Row, ...]
    first_columns: tuple[str, ...]
    domain_label: Callable[[Row], str]


def table_main(table: Table, description: str, full: Budget, quick: Budget) -> dict[str, Any]:
    """A table script's entry point: parse the common flags, then ``run_table``."""
    args, budget = parse_args(description, full, quick)
    return run_table(table, args, budget)


def measure_rows(
    rows: Sequence[Row], args: argparse.Namespace, budget: Budget
) -> tuple[list[tuple[Row, dict[str, Any]]], EvalData]:
    """Train and probe each of ``rows`` (those named by ``--rows``, in that order, all without it,
    each with ``--set``'s overrides) for every seed: each row with its summary, and the probe
    data."""
    by_name = {row.name: row for row in rows}
    if unknown := [name for name in args.rows or () if name not in by_name]:
        raise SystemExit(f"--rows {' '.join(unknown)}: not rows of this table {list(by_name)}")
    selected = [
        replace(by_name[name], overrides=(*by_name[name].overrides, *args.set))
        for name in args.rows or by_name
    ]
    out_dir = Path(args.work_dir)
    gray = {
        bool(compose_row(row, budget, budget.seeds[0], out_dir).data.get("eval_grayscale"))
        for row in selected
    }
    if len(gray) > 1:
        raise SystemExit("the selected rows disagree on data.eval_grayscale; probe them apart")
    data = EvalData.load(budget.eval_images, gray.pop())
    ledger = RunLedger(args.ledger) if args.ledger else None
    results = [
        (
            row,
            summarise(
                row,
                [
                    run_row(row, budget, seed, data, out_dir, args.fresh, ledger)
                    for seed in budget.seeds
                ],
            ),
        )
        for row in selected
    ]
    return results, data


def run_settings(args: argparse.Namespace, budget: Budget, data: EvalData) -> dict[str, Any]:
    """What a benchmark JSON records about how it ran."""
    return {
        "settings": {**asdict(budget), "quick": args.quick},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "load_average_1min_at_end": os.getloadavg()[0],
        "eval_images": {"train": len(data.train_y), "val": len(data.val_y)},
        "classes": NUM_CLASSES,
    }


def run_table(table: Table, args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    """Train and probe every row for every seed; print and write the markdown, plot and JSON."""
    start = time.perf_counter()
    measured, data = measure_rows(table.rows, args, budget)
    floors = compute_floors(data, budget.seeds[0], args.floors)
    results = [{**summary, "domain_label": table.domain_label(row)} for row, summary in measured]
    text = markdown(results, floors, table.first_columns)
    print(f"\n{table.title}\n\n{text}\n")
    stem = Path(args.out).with_suffix("") if args.out else Path(table.title.split(":")[0].lower())
    md_path = Path(args.md or f"{stem}.md")
    plot_path = Path(args.plot or f"{stem}.png")
    md_path.write_text(f"# {table.title}\n\n{text}\n")
    bar_plot(results, floors, plot_path, table.title)
    print(f"markdown: {md_path}\nplot: {plot_path}")
    result = {
        "rows": [summary for _, summary in measured],
        "floors": floors,
        "wall_seconds": round(time.perf_counter() - start, 1),
        **run_settings(args, budget, data),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"json: {args.out}")
    return result
