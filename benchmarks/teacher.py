"""Throughput of the StyleGAN2 teacher at the CIFAR-10 shape, side by side with references.

Measures, in one run and interleaved iteration by iteration:

1. our generator's forward (images/s, GFLOP counted by `FlopCounterMode`, GFLOP/s);
2. plain dense `nn.Conv2d(512, 512, 3)` layers doing the same convolution work (one per 3x3
   conv of the generator; an up-sampling conv costs what a dense conv at its input size does),
   in NCHW and channels_last, the best of the two being the device's dense throughput;
3. the generator's seven modulated 3x3 convolutions, in our form (modulated activations, one
   shared convolution, demodulated outputs) and in the per-sample-weight + grouped-convolution
   form of NVIDIA's reference (implemented here as a baseline).

`--autocast bfloat16|float16` runs every workload under `torch.autocast` (the dense reference
too, so the fraction stays like for like); on CUDA the generator's `num_fp16_res` blocks use
float16 unless `--force-fp32`.

Example: `python benchmarks/teacher.py --batch 64 --iters 5 --out teacher.json`
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from solo_sqsp.teachers.stylegan2 import Generator, modulated_conv2d, setup_fir_filter, upfirdn2d

CHANNELS = 512
# (input resolution, up-sampling factor) of the CIFAR-10 generator's modulated 3x3 convs.
CIFAR_CONV_SHAPES = [(4, 1), (4, 2), (8, 1), (8, 2), (16, 1), (16, 2), (32, 1)]


def cifar_generator(device: torch.device, seed: int = 0) -> Generator:
    """NVIDIA's `--cfg=cifar` generator as converted TF pickles describe it, random weights
    drawn from ``seed`` (the global random state is left as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        generator = Generator(
            z_dim=512,
            c_dim=0,
            w_dim=512,
            img_resolution=32,
            img_channels=3,
            mapping_kwargs=dict(num_layers=2),
            synthesis_kwargs=dict(
                channel_base=16384, channel_max=512, num_fp16_res=4, conv_clamp=256
            ),
        )
    return generator.eval().requires_grad_(False).to(device)


def grouped_modulated_conv2d(
    x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int, fir: torch.Tensor
) -> torch.Tensor:
    """Baseline: materialise demodulated per-sample weights [N, O, I, k, k], grouped conv."""
    batch, in_channels, height, width = x.shape
    out_channels, _, k, _ = weight.shape
    per_sample = weight.unsqueeze(0) * styles.reshape(batch, 1, in_channels, 1, 1)
    per_sample = per_sample * (per_sample.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8).rsqrt()
    grouped = x.reshape(1, batch * in_channels, height, width)
    if up == 1:
        y = F.conv2d(
            grouped,
            per_sample.reshape(batch * out_channels, in_channels, k, k),
            padding=k // 2,
            groups=batch,
        )
    else:
        transposed = per_sample.transpose(1, 2).reshape(batch * in_channels, out_channels, k, k)
        y = F.conv_transpose2d(grouped, transposed, stride=up, groups=batch)
        y = upfirdn2d(y, fir, padding=(1, 1, 1, 1), gain=up**2)
    return y.reshape(batch, out_channels, *y.shape[2:])


def count_flops(fn: Callable[[], object]) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--iters", type=int, default=5, help="timed iterations (median)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--autocast", choices=["none", "bfloat16", "float16"], default="none")
    parser.add_argument("--force-fp32", action="store_true", help="no float16 blocks on CUDA")
    parser.add_argument("--out", help="write the results as JSON to this file")
    args = parser.parse_args()
    device = torch.device(args.device)
    rng = torch.Generator(device=device).manual_seed(0)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=rng, device=device)

    generator = cifar_generator(device)
    z = randn(args.batch, generator.z_dim)
    dense_nchw = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1).to(device).requires_grad_(False)
    dense_nhwc = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1).to(device).requires_grad_(False)
    dense_nhwc = dense_nhwc.to(memory_format=torch.channels_last)
    conv_inputs = [randn(args.batch, CHANNELS, res, res) for res, _ in CIFAR_CONV_SHAPES]
    conv_inputs_nhwc = [x.contiguous(memory_format=torch.channels_last) for x in conv_inputs]
    conv_weights = [randn(CHANNELS, CHANNELS, 3, 3) for _ in CIFAR_CONV_SHAPES]
    conv_styles = [randn(args.batch, CHANNELS) + 1 for _ in CIFAR_CONV_SHAPES]
    fir = setup_fir_filter([1, 3, 3, 1]).to(device)

    def run_modulated(implementation: str) -> list[torch.Tensor]:
        outputs = []
        for (_, up), x, w, s in zip(
            CIFAR_CONV_SHAPES, conv_inputs_nhwc, conv_weights, conv_styles, strict=True
        ):
            if implementation == "ours":
                outputs.append(modulated_conv2d(x, w, s, up=up, padding=1, resample_filter=fir))
            else:
                outputs.append(grouped_modulated_conv2d(x, w, s, up, fir))
        return outputs

    workloads: dict[str, Callable[[], object]] = {
        "generator (ours)": lambda: generator(
            z, None, noise_mode="const", force_fp32=args.force_fp32
        ),
        "dense conv3x3, NCHW": lambda: [dense_nchw(x) for x in conv_inputs],
        "dense conv3x3, channels_last": lambda: [dense_nhwc(x) for x in conv_inputs_nhwc],
        "modulated convs (ours)": lambda: run_modulated("ours"),
        "modulated convs (per-sample weights, grouped)": lambda: run_modulated("grouped"),
    }
    autocast = torch.autocast(
        device.type,
        dtype=getattr(torch, args.autocast, None),
        enabled=args.autocast != "none",
    )
    with torch.inference_mode(), autocast:
        flops = {name: count_flops(fn) for name, fn in workloads.items()}
        # The grouped baseline computes the same function; check before timing it.
        max_diff = max(
            (a - b).abs().max().item()
            for a, b in zip(run_modulated("ours"), run_modulated("grouped"), strict=True)
        )
        seconds: dict[str, list[float]] = {name: [] for name in workloads}
        for _ in range(args.iters + 1):  # the first round is warm-up
            for name, fn in workloads.items():
                synchronize(device)
                start = time.perf_counter()
                fn()
                synchronize(device)
                seconds[name].append(time.perf_counter() - start)

    median = {name: statistics.median(times[1:]) for name, times in seconds.items()}
    gflops = {name: flops[name] / median[name] / 1e9 for name in workloads}
    dense_best = max(gflops["dense conv3x3, NCHW"], gflops["dense conv3x3, channels_last"])
    rows = [
        dict(
            workload=name,
            ms=1e3 * median[name],
            gflop=flops[name] / 1e9,
            gflop_per_s=gflops[name],
            fraction_of_dense=gflops[name] / dense_best,
            seconds=seconds[name][1:],
        )
        for name in workloads
    ]
    images_per_s = args.batch / median["generator (ours)"]
    speedup = (
        median["modulated convs (per-sample weights, grouped)"] / median["modulated convs (ours)"]
    )
    print(
        f"device={device} threads={torch.get_num_threads()} batch={args.batch} "
        f"iters={args.iters} autocast={args.autocast} torch={torch.__version__}"
    )
    print(f"{'workload':<48}{'ms':>10}{'GFLOP':>10}{'GFLOP/s':>10}{'of dense':>10}")
    for row in rows:
        print(
            f"{row['workload']:<48}{row['ms']:>10.1f}{row['gflop']:>10.1f}"
            f"{row['gflop_per_s']:>10.1f}{row['fraction_of_dense']:>10.1%}"
        )
    per_image = flops["generator (ours)"] / args.batch / 1e9
    print(f"generator: {images_per_s:.1f} images/s, {per_image:.2f} GFLOP/image")
    print(f"modulated conv speedup vs per-sample-weight grouped form: {speedup:.2f}x")
    print(f"max |ours - grouped| over the modulated conv outputs: {max_diff:.2e}")
    if args.out:
        result = dict(
            device=str(device),
            cpu=platform.processor() or platform.machine(),
            threads=torch.get_num_threads(),
            torch=torch.__version__,
            batch=args.batch,
            iters=args.iters,
            autocast=args.autocast,
            force_fp32=args.force_fp32,
            images_per_s=images_per_s,
            gflop_per_image=per_image,
            dense_gflop_per_s=dense_best,
            generator_fraction_of_dense=gflops["generator (ours)"] / dense_best,
            modulated_speedup_vs_grouped=speedup,
            modulated_max_abs_diff_vs_grouped=max_diff,
            rows=rows,
        )
        with open(args.out, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
