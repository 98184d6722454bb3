"""Does a digits row train stably at its learning rate? The first steps of a row, step by step.

Trains a row of ``scripts/pretrain/digits/`` with the table budget (``table2.py``'s, or
``--epochs``/``--warmup-fraction``), stops after ``--steps`` steps, and prints per step the
learning rate, the gradient norm (all trainable parameters, before the optimizer step) and the
logged loss terms; the JSON lists them per seed, with the step at which the loss became
non-finite (``diverged_at``, None when stable). Under plain SGD a VICReg loss blows up within a
few steps once the learning rate passes the edge of stability: the gradient norm grows tenfold
per step, the covariance term first. Example (README, "Calibrating the digits benchmark"):
    python benchmarks/stability.py --rows vicreg_real_digits --steps 34 --seeds 0 1 2 \\
        --set ++method_kwargs.head=solo method_kwargs.proj_hidden_dim=2048 --out w2048.json
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from table2 import FULL, ROWS
from table_rows import compose_row

from solo_sqsp.training.nonfinite import NonFiniteError
from solo_sqsp.training.pretrain import run_pretrain


class StepRecorder(Callback):
    """Learning rate, gradient norm and the step-level loss terms of every training step; stops
    the run after ``max_steps``."""

    def __init__(self, max_steps: int) -> None:
        self.max_steps = max_steps
        self.steps: list[dict[str, float]] = []
        self._grad_norm = math.nan

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, module: pl.LightningModule, optimizer: Any
    ) -> None:
        grads = [p.grad.detach().float().norm() for p in module.parameters() if p.grad is not None]
        self._grad_norm = float(torch.stack(grads).norm()) if grads else math.nan

    def on_train_batch_end(self, trainer: pl.Trainer, module: Any, *args: Any) -> None:
        terms = {
            key.removesuffix("_step"): float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("train_") and key.endswith("_step") and "acc" not in key
        }
        lr = trainer.optimizers[0].param_groups[0]["lr"]
        self.steps.append({"step": trainer.global_step, "lr": lr, "grad_norm": self._grad_norm})
        self.steps[-1].update(terms)
        print(json.dumps(self.steps[-1]), flush=True)
        if trainer.global_step >= self.max_steps:
            trainer.should_stop = True


def probe_row(config: str, overrides: list[str], seed: int, args: argparse.Namespace) -> dict:
    """The first ``args.steps`` steps of ``config`` with ``seed``: the recorded steps and the
    step at which the loss became non-finite (None: stable)."""
    (row,) = [row for row in ROWS if row.config == config]
    row = replace(row, overrides=(*row.overrides, *overrides))
    budget = replace(FULL, epochs=args.epochs or FULL.epochs, warmup_fraction=args.warmup_fraction)
    with tempfile.TemporaryDirectory() as folder:
        cfg = compose_row(row, budget, seed, Path(folder))
        cfg.checkpoint.enabled = False
        cfg.knn_eval.enabled = False
        recorder = StepRecorder(args.steps)
        diverged_at = None
        try:
            run_pretrain(cfg, callbacks=[recorder])
        except NonFiniteError:
            diverged_at = len(recorder.steps) + 1  # the guard stops before logging that step
    peak = max((step["grad_norm"] for step in recorder.steps), default=math.nan)
    print(f"{config} {' '.join(overrides)} seed {seed}: diverged at step {diverged_at}")
    return {
        "seed": seed,
        "diverged_at": diverged_at,
        "max_grad_norm": peak,
        "steps": recorder.steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", nargs="+", required=True, help="row config names")
    parser.add_argument("--steps", type=int, default=34, help="training steps per run")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help=f"schedule length (default {FULL.epochs})")
    parser.add_argument(
        "--warmup-fraction", type=float, default=FULL.warmup_fraction, help="warm-up share"
    )
    parser.add_argument("--set", nargs="*", default=[], metavar="OVERRIDE")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", help="JSON results")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    results = {
        config: [probe_row(config, args.set, seed, args) for seed in args.seeds]
        for config in args.rows
    }
    if args.out:
        Path(args.out).write_text(json.dumps({"overrides": args.set, "rows": results}, indent=2))


if __name__ == "__main__":
    main()
