"""Training-step throughput of ``sqsp`` (Real&Syn, a = 0.5) against VICReg (Real), side by side.

At the CIFAR-10 shapes (NVIDIA's StyleGAN2-ADA CIFAR-10 generator with random weights, from
``benchmarks/teacher.py``; ResNet18 with the CIFAR stem; the ``sqsp_cifar10`` config) and equal
total batch ``B``, one step (forward, backward, optimizer step) of

1. ``sqsp`` with the live teacher: ``B/2`` fresh teacher samples (generation and per-sample
   augmentation are part of its step) plus ``B/2`` real images in two views;
2. ``sqsp`` with the teacher bank (``--bank``: ``method_kwargs.synthetic.source=bank``);
3. VICReg (Real): ``B`` real images in two views (the ``vicreg_real_cifar10`` config);
4. the teacher alone drawing ``B/2`` samples (the teacher's share of step 1)

run interleaved, round by round (round 0 warms up); a ratio is the median over rounds of the
ratio within each round (``median_s`` holds the plain medians). On a shared CPU the same ratios
by process CPU time (``cpu_time_ratios``) leave out the time spent waiting for a core. Real
views are given to every method as already-augmented tensors, so data loading does not enter. The
FLOP floor of the ratio is FLOPs(sqsp step) / FLOPs(VICReg step), counted by
``torch.utils.flop_counter``.
Peak memory comes from a fresh subprocess per method: the peak resident set size on CPU (Linux
``VmHWM``), ``torch.cuda.max_memory_allocated`` on CUDA, before and after a few steps.

Targets: measured ratio <= 1.2x the FLOP floor (live teacher); <= 0.85 with the bank.
``augment_speedup`` is ``benchmarks/augment.py``'s batched-vs-torchvision speed-up at 32x32
(measured here at ``--augment-batch``, or read from its ``--out`` JSON via ``--augment-json``).

On a shared CPU pin the thread count (``--threads``) and read the load average printed with the
table. On a GPU: ``--device cuda --batch 512 --autocast bfloat16``, reported separately.

Example: ``python benchmarks/throughput.py --batch 32 --iters 5 --bank --out throughput.json``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from augment import measure as measure_augment
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from teacher import cifar_generator
from torch.utils.flop_counter import FlopCounterMode

from solo_sqsp.config import parse_cfg
from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.methods import ACTIVE_BASE, get_method
from solo_sqsp.teachers import GeneratorTeacher
from solo_sqsp.teachers.stylegan2 import Generator

CONFIG_DIR = REPO_ROOT / "scripts" / "pretrain" / "cifar10"
CONFIG_NAMES = {"sqsp": "sqsp_cifar10", "vicreg": "vicreg_real_cifar10"}
STEP_TARGET_OVER_FLOP_FLOOR = 1.2
BANK_STEP_TARGET = 0.85
NUM_CLASSES = 10
STEPS = ("sqsp", "sqsp_bank", "vicreg", "teacher")
QUICK_SHAPES = {"resolution": 16, "crop": 8, "width": 64}
"""--quick: a narrow 16 px generator of the same architecture, 8 px crops, 64-d heads."""


def quick_generator() -> Generator:
    """The CIFAR generator's structure at test size (2 mapping layers, 16 px, <= 32 channels)."""
    return Generator(
        z_dim=16,
        c_dim=0,
        w_dim=16,
        img_resolution=QUICK_SHAPES["resolution"],
        img_channels=3,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 256, "channel_max": 32},
    )


def build_teacher(quick: bool, device: torch.device) -> GeneratorTeacher:
    """The teacher as the ``sqsp_cifar10`` config builds it (synthesis blocks, random noise),
    with the same random weights in every process (the memory processes reopen the bank)."""
    torch.manual_seed(0)
    generator = quick_generator().to(device) if quick else cifar_generator(device)
    return GeneratorTeacher(generator, noise_mode="random")


def method_configs(args: argparse.Namespace, bank_path: Path | None) -> dict[str, DictConfig]:
    """Parsed configs of the steps from ``scripts/pretrain/cifar10`` (``CONFIG_NAMES``)."""
    overrides = [
        f"optimizer.batch_size={args.batch}",
        "accelerator=cpu" if args.device == "cpu" else "accelerator=gpu",
        "devices=1",
        "knn_eval.enabled=False",
        "scheduler.name=none",
    ]
    configs = {}
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.2"):
        for name, config_name in CONFIG_NAMES.items():
            configs[name] = compose(config_name, overrides=overrides)
            OmegaConf.set_struct(configs[name], False)
    if args.quick:
        width = QUICK_SHAPES["width"]
        for cfg in configs.values():
            cfg.augmentations[0].crop_size = QUICK_SHAPES["crop"]
        configs["sqsp"].method_kwargs.proj_output_dim = width
        configs["sqsp"].method_kwargs.squeeze.hidden_dim = width
        configs["sqsp"].method_kwargs.squeeze.out_dim = width
        configs["vicreg"].method_kwargs.proj_hidden_dim = width
        configs["vicreg"].method_kwargs.proj_output_dim = width
    configs["sqsp_bank"] = configs["sqsp"].copy()
    configs["sqsp_bank"].method_kwargs.synthetic = {
        "source": "bank",
        "bank_size": args.bank_size,
        "bank_path": str(bank_path),
    }
    return {name: parse_cfg(cfg) for name, cfg in configs.items()}


class TrainStep:
    """One training step of a method (forward under ``autocast``, backward, optimizer step) on
    fixed, already-augmented real views."""

    def __init__(
        self,
        cfg: DictConfig,
        teacher: GeneratorTeacher,
        device: torch.device,
        autocast: Callable[[], AbstractContextManager],
    ) -> None:
        method = get_method(cfg.method)
        model = method(cfg, teacher=teacher) if cfg.method == "sqsp" else method(cfg)
        self.model = model.to(device).to(memory_format=torch.channels_last).train()
        optimizers = self.model.configure_optimizers()
        self.optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
        self.model.on_fit_start()
        real = getattr(self.model, "real_batch_size", cfg.optimizer.batch_size)
        crop = cfg.augmentations[0].crop_size
        rng = torch.Generator().manual_seed(0)
        views = [torch.randn(real, 3, crop, crop, generator=rng) for _ in range(2)]
        targets = torch.randint(NUM_CLASSES, (real,), generator=rng)
        self.batch = [
            torch.arange(real, device=device),
            [view.to(device) for view in views],
            targets.to(device),
        ]
        self.autocast = autocast

    def __call__(self) -> None:
        with self.autocast():
            loss = self.model.training_step(self.batch, 0)
        loss = loss["loss"] if isinstance(loss, dict) else loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)


class TeacherDraw:
    """The teacher drawing the ``sqsp`` step's synthetic samples (latents, generator, pooling)."""

    def __init__(
        self,
        teacher: GeneratorTeacher,
        num_samples: int,
        autocast: Callable[[], AbstractContextManager],
    ) -> None:
        self.teacher, self.num_samples, self.autocast = teacher, num_samples, autocast
        self.rng = torch.Generator(device=teacher.device).manual_seed(0)

    def __call__(self) -> None:
        with self.autocast():
            self.teacher.sample(self.num_samples, self.rng)


def make_autocast(device: torch.device, dtype: str) -> Callable[[], AbstractContextManager]:
    if dtype == "none":
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=getattr(torch, dtype))


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(step: Callable[[], None]) -> int:
    with FlopCounterMode(display=False) as counter:
        step()
    return counter.get_total_flops()


def build_steps(
    args: argparse.Namespace,
    device: torch.device,
    bank_path: Path | None,
    names: list[str],
    setup_seconds: dict[str, float] | None = None,
) -> dict[str, Callable[[], None]]:
    """The workloads ``names`` (of ``STEPS``), sharing one teacher; ``setup_seconds`` gets each
    one's construction time (for ``sqsp_bank`` it includes building the bank when absent)."""
    setup_seconds = {} if setup_seconds is None else setup_seconds
    autocast = make_autocast(device, args.autocast)
    teacher = build_teacher(args.quick, device)
    configs = method_configs(args, bank_path)
    steps: dict[str, Callable[[], None]] = {}
    for name in names:
        start = time.perf_counter()
        if name == "teacher":
            sqsp = configs["sqsp"]
            num_syn = round(sqsp.method_kwargs.syn_ratio * sqsp.optimizer.batch_size)
            steps[name] = TeacherDraw(teacher, num_syn, autocast)
        else:
            steps[name] = TrainStep(configs[name], teacher, device, autocast)
        setup_seconds[name] = time.perf_counter() - start
    return steps


def time_interleaved(
    steps: dict[str, Callable[[], None]], iters: int, device: torch.device
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall-clock and process CPU seconds of each workload in rounds ``1..iters``, one call each
    per round (round 0 warms up)."""
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    for iteration in range(iters + 1):
        for name, step in steps.items():
            synchronize(device)
            start, start_cpu = time.perf_counter(), time.process_time()
            step()
            synchronize(device)
            if iteration:
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def paired_ratio(seconds: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over rounds of the within-round ratio: robust to load drifting across rounds."""
    return statistics.median(
        a / b for a, b in zip(seconds[numerator], seconds[denominator], strict=True)
    )


def peak_rss_bytes() -> int:
    """This process's peak resident set size: Linux's ``VmHWM`` (reset by ``exec``, unlike
    ``ru_maxrss``, which keeps the forking parent's), else ``ru_maxrss``."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    scale = 1 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB elsewhere
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def peak_memory_child(args: argparse.Namespace) -> dict[str, float]:
    """In this (fresh) process: build one workload, run a few steps, report memory in MiB."""
    device = torch.device(args.device)
    bank_path = Path(args.bank_path) if args.bank_path else None
    step = build_steps(args, device, bank_path, [args.child])[args.child]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        before = peak_rss_bytes()
    for _ in range(args.memory_steps):
        step()
    synchronize(device)
    on_cuda = device.type == "cuda"
    peak = torch.cuda.max_memory_allocated(device) if on_cuda else peak_rss_bytes()
    mib = 2**20
    return {
        "before_steps_mib": before / mib,
        "peak_mib": peak / mib,
        "step_mib": (peak - before) / mib,
    }


def measure_peak_memory(args: argparse.Namespace, names: list[str], bank_path: Path | None):
    """``peak_memory_child`` of every workload in its own subprocess."""
    results = {}
    for name in names:
        command = [sys.executable, __file__, "--child", name, *child_arguments(args, bank_path)]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            raise RuntimeError(f"memory subprocess for {name} failed:\n{done.stderr[-4000:]}")
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def child_arguments(args: argparse.Namespace, bank_path: Path | None) -> list[str]:
    options = [
        f"--batch={args.batch}",
        f"--device={args.device}",
        f"--autocast={args.autocast}",
        f"--bank-size={args.bank_size}",
        f"--memory-steps={args.memory_steps}",
    ]
    if args.threads:
        options.append(f"--threads={args.threads}")
    if args.quick:
        options.append("--quick")
    if bank_path is not None:
        options.append(f"--bank-path={bank_path}")
    return options


def augment_speedup(args: argparse.Namespace, device: torch.device) -> tuple[float, str]:
    """``benchmarks/augment.py``'s speed-up at 32x32, measured now or read from its JSON."""
    if args.augment_json:
        report = json.loads(Path(args.augment_json).read_text(encoding="utf-8"))
        at_32 = next(r for r in report["results"] if r["size"] == 32)
        return float(at_32["speedup_vs_per_image"]), f"{args.augment_json} (batch {at_32['batch']})"
    result = measure_augment(32, args.augment_batch, args.augment_iters, device)
    return float(result["speedup_vs_per_image"]), f"measured, batch {args.augment_batch}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=None, help="total batch B (CPU 32, --quick 8)")
    parser.add_argument("--iters", type=int, default=5, help="timed rounds (median)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: keep)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=["none", "bfloat16", "float16"], default="none")
    parser.add_argument("--bank", action="store_true", help="add the teacher-bank sqsp row")
    parser.add_argument("--bank-size", type=int, default=None, help="bank samples (default 2B)")
    parser.add_argument("--bank-path", default=None, help="bank directory (default: temporary)")
    parser.add_argument("--memory-steps", type=int, default=None, help="steps per memory process")
    parser.add_argument("--augment-json", default=None, help="benchmarks/augment.py --out JSON")
    parser.add_argument("--augment-batch", type=int, default=256)
    parser.add_argument("--augment-iters", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="tiny shapes (seconds; the tests)")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    parser.add_argument("--child", choices=STEPS, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.batch is None:
        args.batch = 8 if args.quick else 32
    if args.memory_steps is None:
        args.memory_steps = 1 if args.quick else 3
    if args.bank_size is None:
        args.bank_size = 2 * args.batch
    if args.quick:
        args.augment_batch, args.augment_iters = min(args.augment_batch, 16), 1
    return args


def report_table(result: dict[str, Any]) -> None:
    medians, flops, memory = result["median_s"], result["flops"], result["peak_memory_mib"]
    print(
        f"device={result['device']} base={result['base']} batch={result['batch']} "
        f"threads={result['threads']} autocast={result['autocast']} iters={result['iters']} "
        f"load average before {result['load_average_before']} after "
        f"{result['load_average_after']}"
    )
    print(f"{'step':<28}{'s/step':>10}{'GFLOP':>10}{'peak MiB':>11}{'step MiB':>11}")
    for name in medians:
        gflop = f"{flops[name] / 1e9:.2f}" if name in flops else "-"
        peak = memory.get(name, {})
        print(
            f"{name:<28}{medians[name]:>10.4f}{gflop:>10}"
            f"{peak.get('peak_mib', math.nan):>11.0f}{peak.get('step_mib', math.nan):>11.0f}"
        )
    ratio, floor = result["step_ratio_sqsp_over_vicreg"], result["flop_ratio"]
    print(
        f"sqsp / VICReg step: {ratio:.3f} (FLOP floor {floor:.3f}; {ratio / floor:.2f}x the floor, "
        f"target <= {STEP_TARGET_OVER_FLOP_FLOOR}x: "
        f"{'met' if ratio <= STEP_TARGET_OVER_FLOP_FLOOR * floor else 'NOT met'})"
    )
    print(f"teacher share of the sqsp step: {result['teacher_fraction']:.1%}")
    if "step_ratio_bank_over_vicreg" in result:
        bank = result["step_ratio_bank_over_vicreg"]
        print(
            f"sqsp (bank) / VICReg step: {bank:.3f} (target <= {BANK_STEP_TARGET}: "
            f"{'met' if bank <= BANK_STEP_TARGET else 'NOT met'}); bank of "
            f"{result['bank_size']} samples (set-up with the build: {result['bank_setup_s']:.1f} s)"
        )
    cpu_ratios = ", ".join(f"{key} {value:.3f}" for key, value in result["cpu_time_ratios"].items())
    print(f"by process CPU time (waits for a core excluded): {cpu_ratios}")
    print(f"augmentation speed-up (benchmarks/augment.py, 32x32): {result['augment_speedup']:.1f}x")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r".*self\.log.*")  # no Trainer: logging is a no-op
    if args.child:
        print(json.dumps(peak_memory_child(args)))
        return
    device = torch.device(args.device)
    names = ["sqsp", *(["sqsp_bank"] if args.bank else []), "vicreg", "teacher"]
    with tempfile.TemporaryDirectory(prefix="throughput-bank-") as scratch:
        bank_path = Path(args.bank_path or Path(scratch) / "bank") if args.bank else None
        setup_seconds: dict[str, float] = {}
        steps = build_steps(args, device, bank_path, names, setup_seconds)
        load_before = os.getloadavg()
        flops = {name: count_flops(step) for name, step in steps.items()}
        seconds, cpu_seconds = time_interleaved(steps, args.iters, device)
        load_after = os.getloadavg()
        del steps
        memory = measure_peak_memory(args, [n for n in names if n != "teacher"], bank_path)
    speedup, speedup_source = augment_speedup(args, device)

    medians = {name: statistics.median(times) for name, times in seconds.items()}
    result: dict[str, Any] = {
        "step_ratio_sqsp_over_vicreg": paired_ratio(seconds, "sqsp", "vicreg"),
        "flop_ratio": flops["sqsp"] / flops["vicreg"],
        "teacher_fraction": paired_ratio(seconds, "teacher", "sqsp"),
        "augment_speedup": speedup,
        "augment_speedup_source": speedup_source,
        "target_step_over_flop_floor": STEP_TARGET_OVER_FLOP_FLOOR,
        "device": str(device),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "base": ACTIVE_BASE,
        "threads": torch.get_num_threads(),
        "batch": args.batch,
        "quick": args.quick,
        "autocast": args.autocast,
        "iters": args.iters,
        "load_average_before": load_before,
        "load_average_after": load_after,
        "median_s": medians,
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "cpu_time_ratios": {
            "sqsp_over_vicreg": paired_ratio(cpu_seconds, "sqsp", "vicreg"),
            "teacher_fraction": paired_ratio(cpu_seconds, "teacher", "sqsp"),
            **(
                {"bank_over_vicreg": paired_ratio(cpu_seconds, "sqsp_bank", "vicreg")}
                if args.bank
                else {}
            ),
        },
        "flops": flops,
        "peak_memory_mib": memory,
        "setup_s": setup_seconds,
    }
    result["step_over_flop_floor"] = result["step_ratio_sqsp_over_vicreg"] / result["flop_ratio"]
    if args.bank:
        result.update(
            step_ratio_bank_over_vicreg=paired_ratio(seconds, "sqsp_bank", "vicreg"),
            target_bank_step_ratio=BANK_STEP_TARGET,
            bank_size=args.bank_size,
            bank_setup_s=setup_seconds["sqsp_bank"],
        )
    report_table(result)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
