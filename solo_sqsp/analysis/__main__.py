"""Command line of the analyses (``python -m solo_sqsp.analysis {mmd,embed} --help``)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from solo_sqsp.analysis.domain_gap import measure_domain_gap
from solo_sqsp.analysis.embedding import METHODS, run_embedding
from solo_sqsp.analysis.mmd import KERNELS


def bandwidth_arg(text: str) -> float | str:
    """``median`` or a positive number."""
    if text == "median":
        return text
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected 'median' or a number > 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m solo_sqsp.analysis", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    mmd = commands.add_parser(
        "mmd", help="squared MMD of student features, synthetic vs real (Table 5, right)"
    )
    mmd.add_argument("--checkpoint", required=True, help="pretraining .ckpt or its run folder")
    mmd.add_argument("--teacher", help="teacher file (default: the run's method_kwargs.teacher)")
    mmd.add_argument("--num-samples", type=int, default=1000, help="per side (default 1000)")
    mmd.add_argument("--kernel", choices=KERNELS, default="rbf")
    mmd.add_argument("--bandwidth", type=bandwidth_arg, default="median", help="rbf sigma")
    mmd.add_argument("--l2-normalize", action="store_true", help="L2-normalise features first")
    mmd.add_argument("--out", type=Path, help="write the result as JSON here")

    embed = commands.add_parser("embed", help="2-D embeddings of teacher samples (Fig. 2) as PNG")
    embed.add_argument("--teacher", required=True, help="teacher file, or bundled:NAME")
    embed.add_argument("--checkpoint", help="student checkpoint: adds its panel and k-NN classes")
    embed.add_argument("--num-samples", type=int, default=1000)
    embed.add_argument("--method", choices=METHODS, default="auto", help="auto: umap if installed")
    embed.add_argument("--num-labelled", type=int, help="real train images for k-NN (default all)")
    embed.add_argument("--out", type=Path, required=True, help="PNG file (coordinates: .npz)")

    for command in (mmd, embed):
        command.add_argument("--seed", type=int, default=0)
        command.add_argument("--device", default="cpu", help="cpu (default) or cuda[:i]")
        command.add_argument("--train-path", help="override the run's data.train_path")
        command.add_argument("--batch-size", type=int, default=256)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command: every option is a keyword of its function (``mmd``'s ``--out`` aside,
    written here)."""
    options = vars(build_parser().parse_args(argv))
    if options.pop("command") == "mmd":
        out = options.pop("out")
        result = measure_domain_gap(**options)
        print(
            f"squared MMD (synthetic vs real, n={result['num_samples']} each, {result['kernel']}"
            f" kernel): {result['squared_mmd']:.6f}; noise floor (real vs real): "
            f"{result['noise_floor']:.6f}"
        )
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(result, indent=2))
            print(f"written: {out}")
    else:
        result = run_embedding(**options)
        print(f"{result['method']} embedding of {result['panels']} -> {result['png']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
