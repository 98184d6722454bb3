"""``python -m solo_sqsp.teachers inspect PATH``: what a teacher generator is, which of its
modules can serve as features (with shapes and pooled widths), and a grid of its samples."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from torchvision.utils import save_image

from solo_sqsp.teachers.adapter import DEFAULT_FEATURES, GeneratorTeacher
from solo_sqsp.teachers.loading import KINDS, build_teacher, detect_kind

MAX_GRID_CLASSES = 32
"""Rows of a conditional grid unless --classes picks them (one row per class)."""

GRID_PADDING = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m solo_sqsp.teachers", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser("inspect", help="describe a teacher generator")
    inspect.add_argument("path", help="teacher file, or package.module:factory")
    inspect.add_argument("--kind", choices=KINDS, default="auto")
    inspect.add_argument(
        "--features",
        default=DEFAULT_FEATURES,
        help="regex over module names (default: %(default)s)",
    )
    inspect.add_argument("--grid", type=Path, help="write a PNG grid of samples here")
    inspect.add_argument(
        "--grid-size", type=int, default=8, help="samples per row (and rows if unconditional)"
    )
    inspect.add_argument(
        "--classes",
        type=_class_list,
        help=f"comma-separated class rows of a conditional grid (default: the first "
        f"{MAX_GRID_CLASSES} classes)",
    )
    inspect.add_argument("--seed", type=int, default=0, help="seed of the grid's latents")
    inspect.add_argument("--device", default="cpu")
    return parser


def _class_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected integers like 0,3,7; got {text!r}") from err


def describe(teacher: GeneratorTeacher, features: str) -> list[str]:
    """Architecture facts and the candidate feature modules, one printed line each."""
    generator = teacher.generator
    mapping = getattr(generator, "mapping", None)
    facts = {
        "class": f"{type(generator).__module__}.{type(generator).__qualname__}",
        "z_dim": teacher.z_dim,
        "c_dim": teacher.c_dim,
        "w_dim": getattr(generator, "w_dim", "n/a"),
        "resolution": teacher.resolution,
        "channels": teacher.img_channels,
        "num_ws": getattr(generator, "num_ws", "n/a"),
        "parameters": f"{sum(p.numel() for p in generator.parameters()):,}",
        "mapping layers": getattr(mapping, "num_layers", "n/a"),
    }
    lines = [f"{key}: {value}" for key, value in facts.items()]
    lines.append(f"feature modules (* = selected by '{features}'; shape per sample -> pooled):")
    for info in teacher.candidate_features():
        mark = "*" if info.name in teacher.feature_names else " "
        lines.append(f"  {mark} {info.name:<32} {info.shape!s:<18} -> {info.dim}")
    lines.append(
        f"selected: {len(teacher.feature_names)} modules, pooled widths {teacher.feature_dims}, "
        f"total {sum(teacher.feature_dims)}"
    )
    return lines


def write_grid(
    teacher: GeneratorTeacher, path: Path, size: int, classes: Sequence[int] | None, seed: int
) -> str:
    """PNG of samples mapped from [-1, 1] to [0, 1]: one row per class for a conditional
    generator, ``size`` rows otherwise; ``size`` samples per row. Returns a summary line."""
    if size < 1:
        raise ValueError(f"--grid-size must be at least 1, got {size}")
    if teacher.c_dim == 0:
        if classes is not None:
            raise ValueError("--classes needs a conditional generator; this one has c_dim 0")
        rows: list[int | None] = [None] * size
    else:
        rows = list(classes if classes is not None else range(min(teacher.c_dim, MAX_GRID_CLASSES)))
        bad = [k for k in rows if not 0 <= k < teacher.c_dim]
        if bad:
            raise ValueError(f"--classes {bad} out of range for c_dim={teacher.c_dim}")
    rng = torch.Generator(device=teacher.device).manual_seed(seed)
    images = []
    for label in rows:
        z = torch.randn(size, teacher.z_dim, generator=rng, device=teacher.device)
        c = torch.zeros(size, teacher.c_dim, device=teacher.device)
        if label is not None:
            c[:, label] = 1
        images.append(teacher(z, c)[0].float().clamp(-1, 1).add(1).div(2).cpu())
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(torch.cat(images), path, nrow=size, padding=GRID_PADDING)
    what = "rows = classes " + ",".join(map(str, rows)) if teacher.c_dim else "unconditional"
    return f"grid: {path} ({len(rows)} x {size} samples, {what}, seed {seed})"


def inspect_teacher(args: argparse.Namespace) -> None:
    kind = detect_kind(args.path) if args.kind == "auto" else args.kind
    teacher = build_teacher(args.path, kind, features=args.features, device=args.device)
    print(f"teacher: {args.path} (kind: {kind})")
    print("\n".join(describe(teacher, args.features)))
    if args.grid is not None:
        print(write_grid(teacher, args.grid, args.grid_size, args.classes, args.seed))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        inspect_teacher(args)
    except (ValueError, OSError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
