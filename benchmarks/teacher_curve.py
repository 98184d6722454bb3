"""Student accuracy against teacher quality (paper, Fig. 6) on the embedded digits.

For each teacher (default: the snapshots in ``benchmarks/teacher_snapshots/`` and the bundled
teacher), Squeeze (``squeeze_digits``) and Sq & Sp (``sqsp_digits``) students are trained at
``table2.py``'s budget and seeds and probed like the tables; VICReg on Real and on Real & Syn
(bundled teacher) are the reference lines. Each teacher's quality (Frechet distance, confident
share: ``teacher_quality.py``) is measured once and kept in ``<work-dir>/teacher_quality.json``
under the file's hash. Runs are shared with the tables through ``--work-dir`` and resume like
them. Writes a markdown table, a plot of student top-1 against teacher FD and the JSON. Examples:
    python benchmarks/teacher_curve.py --threads 2 --out teacher_curve.json
    python benchmarks/teacher_curve.py --quick --out /tmp/curve.json     # smoke: about 2 minutes
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from table2 import FULL, QUICK
from table_rows import (
    Row,
    compute_floors,
    diverged_label,
    measure_rows,
    parse_args,
    run_settings,
)
from teacher_quality import Judge

from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.teachers.loading import resolve_teacher_path

BUNDLED = "bundled:digits_teacher.pt"  # the rows' own teacher: its runs are table2.py's
SNAPSHOTS = REPO_ROOT / "benchmarks" / "teacher_snapshots"
STUDENTS = (("Squeeze", "squeeze_digits", "syn"), ("Sq & Sp", "sqsp_digits", "real+syn"))
REFERENCES = (
    Row("VICReg (Real)", "vicreg_real_digits", "vicreg", "real"),
    Row("VICReg (Real & Syn)", "vicreg_mix_digits", "vicreg", "real+syn"),
)
QUALITY_FILE = "teacher_quality.json"
QUICK_JUDGE = {"epochs": 1, "coverage_samples": 100}
FULL_JUDGE = {"epochs": 15, "coverage_samples": 1000}


def default_teachers() -> list[str]:
    """The snapshots (as paths relative to the working folder where possible), then the
    bundled teacher."""
    snapshots = sorted(SNAPSHOTS.glob("*.pt"))
    cwd = Path.cwd().resolve()
    shown = [str(p.relative_to(cwd)) if p.is_relative_to(cwd) else str(p) for p in snapshots]
    return [*shown, BUNDLED]


def add_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--teachers",
        nargs="+",
        help="teacher checkpoints (default: the snapshots and the bundled teacher)",
    )
    parser.add_argument(
        "--references",
        nargs="+",
        choices=[row.config for row in REFERENCES],
        help="reference rows drawn as lines (default: all)",
    )


def student_rows(teacher: str) -> list[Row]:
    """Squeeze and Sq & Sp with ``teacher`` (the rows' configs unchanged for the bundled one)."""
    overrides = () if teacher == BUNDLED else (f"++method_kwargs.teacher.path={teacher}",)
    return [Row(label, config, "sqsp", domain, overrides) for label, config, domain in STUDENTS]


def file_hash(path: str) -> str:
    return hashlib.sha256(Path(resolve_teacher_path(path)).read_bytes()).hexdigest()[:16]


def teacher_qualities(teachers: list[str], work_dir: Path, quick: bool) -> dict[str, Any]:
    """Quality of every teacher, from ``work_dir/teacher_quality.json`` where measured before
    with the same judge settings (keyed by file hash), else measured and added to it."""
    settings = QUICK_JUDGE if quick else FULL_JUDGE
    cache_path = work_dir / QUALITY_FILE
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    judge: Judge | None = None
    qualities = {}
    for teacher in teachers:
        key = f"{file_hash(teacher)}-e{settings['epochs']}-n{settings['coverage_samples']}"
        if key not in cache:
            judge = judge or Judge.train(settings["epochs"], seed=0)
            cache[key] = judge.quality(teacher, settings["coverage_samples"], seed=0)
            work_dir.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps(cache, indent=2))
        qualities[teacher] = cache[key]
    return qualities


def markdown(points: list[dict[str, Any]], references: list[dict[str, Any]]) -> str:
    """One line per teacher (quality, each student's k-NN and linear top-1), then the
    reference rows."""

    def cell(row: dict[str, Any], metric: str) -> str:
        return f"{row[f'{metric}_mean']:.1f} ± {row[f'{metric}_std']:.1f}"

    students = [label for label, _, _ in STUDENTS]
    header = ["teacher", "iterations", "Frechet distance", "confident"]
    header += [f"{label} {probe}" for label in students for probe in ("k-NN", "linear")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for point in points:
        quality = point["quality"]
        first = [
            Path(point["teacher"]).name,
            str(quality["teacher_extra"].get("iterations", "?")),
            f"{quality['fd_vs_train_split']['teacher']:.2f}",
            f"{100 * quality['coverage']['teacher']['confident_share']:.0f}%",
        ]
        scores = [
            cell(point[label], metric)
            for label in students
            for metric in ("knn_top1", "linear_top1")
        ]
        lines.append("| " + " | ".join(first + scores) + " |")
    for row in references:
        padding = ["", "", ""]
        scores = [cell(row, "knn_top1"), cell(row, "linear_top1")] * len(students)
        lines.append("| " + " | ".join([diverged_label(row), *padding, *scores]) + " |")
    return "\n".join(lines)


def curve_plot(points: list[dict[str, Any]], references: list[dict[str, Any]], path: Path) -> None:
    """Student k-NN and linear top-1 (mean, std over seeds) against the teacher's FD (log
    scale), the reference rows as horizontal lines: the paper's Fig. 6 on digits."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    ordered = sorted(points, key=lambda p: p["quality"]["fd_vs_train_split"]["teacher"])
    fds = [p["quality"]["fd_vs_train_split"]["teacher"] for p in ordered]
    for ax, metric, name in zip(axes, ("knn_top1", "linear_top1"), ("k-NN", "linear"), strict=True):
        for label, _, _ in STUDENTS:
            means = [p[label][f"{metric}_mean"] for p in ordered]
            stds = [p[label][f"{metric}_std"] for p in ordered]
            ax.errorbar(fds, means, yerr=stds, marker="o", capsize=3, label=label)
        for row, style in zip(references, ("--", ":"), strict=False):
            ax.axhline(row[f"{metric}_mean"], linestyle=style, color="gray", label=row["label"])
        ax.set_xscale("log")
        ax.set_xlabel("teacher Frechet distance (lower is better)")
        ax.set_title(f"student {name} top-1")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 (%)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args, budget = parse_args(__doc__.split("\n\n")[0], FULL, QUICK, add_flags)
    if args.rows:
        raise SystemExit("teacher_curve.py selects with --teachers, not --rows")
    start = time.perf_counter()
    teachers = args.teachers or default_teachers()
    qualities = teacher_qualities(teachers, Path(args.work_dir), args.quick)
    points = []
    for teacher in teachers:
        measured, _ = measure_rows(student_rows(teacher), args, budget)
        point = {"teacher": teacher, "quality": qualities[teacher]}
        points.append(point | {row.label: summary for row, summary in measured})
    chosen = args.references or [row.config for row in REFERENCES]
    references, data = measure_rows([r for r in REFERENCES if r.config in chosen], args, budget)
    floors = compute_floors(data, budget.seeds[0], args.floors)
    reference_rows = [summary for _, summary in references]
    text = markdown(points, reference_rows)
    title = "Student top-1 against teacher quality (digits, paper Fig. 6)"
    print(f"\n{title}\n\n{text}\n")
    stem = Path(args.out).with_suffix("") if args.out else Path("teacher_curve")
    md_path, plot_path = Path(args.md or f"{stem}.md"), Path(args.plot or f"{stem}.png")
    md_path.write_text(f"# {title}\n\n{text}\n")
    curve_plot(points, reference_rows, plot_path)
    print(f"markdown: {md_path}\nplot: {plot_path}")
    result = {
        "points": points,
        "references": reference_rows,
        "floors": floors,
        "wall_seconds": round(time.perf_counter() - start, 1),
        **run_settings(args, budget, data),
    }
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"json: {args.out}")


if __name__ == "__main__":
    main()
