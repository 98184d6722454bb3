"""Train a small StyleGAN2 teacher generator on the embedded digits or on an image folder.

The result is a teacher checkpoint (``save_teacher_checkpoint``: the EMA generator, readable with
``torch.load(weights_only=True)``) that ``solo_sqsp.teachers.build_teacher`` loads like any other
teacher, and a PNG grid of its samples. A training state beside it (``--state``, default
``<out>.state.pt``) is written every ``--checkpoint-every`` iterations and at the end, so
``--resume`` continues an interrupted run exactly; ``--minutes`` stops cleanly after a wall-clock
budget; ``--snapshot-every N`` also keeps the teacher of every N-th iteration apart (teachers along
training, e.g. for an accuracy-vs-teacher-quality curve).

The package's embedded teacher ``solo_sqsp/assets/digits_teacher.pt`` is iteration 40,000 of
    python scripts/teacher/train_teacher.py --out digits_teacher.pt --augment translation,color \
        --iters 40000 --snapshot-every 5000 --threads 1
(trained over several sessions with ``--resume``, which continues exactly; about 1-3 iterations/s
on a shared 2-core CPU); ``benchmarks/teacher_snapshots/`` keeps earlier iterations of that run.
Users without a pretrained GAN train one on their own images with ``--data <image folder>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.datasets import ImageFolder
from tqdm import tqdm

from solo_sqsp.data.digits import DigitsRendering, load_embedded_digits
from solo_sqsp.teachers.network_pickle import save_teacher_checkpoint
from solo_sqsp.teachers.training import (
    AUGMENTATIONS,
    TeacherTrainer,
    TeacherTrainingConfig,
    images_to_training_tensor,
    load_training_state,
    sample_grid,
    save_training_state,
)

DEFAULTS = TeacherTrainingConfig()


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="teacher checkpoint to write (.pt)")
    parser.add_argument(
        "--data",
        type=Path,
        help="image folder <path>/<class>/<image>; default: the embedded digits' training split",
    )
    parser.add_argument("--iters", type=int, default=5000, help="training iterations in total")
    parser.add_argument("--minutes", type=float, help="stop (and save) after this wall time")
    parser.add_argument("--batch", type=int, default=DEFAULTS.batch_size)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolution", type=int, default=DEFAULTS.resolution)
    parser.add_argument("--channel-base", type=int, default=DEFAULTS.channel_base)
    parser.add_argument("--channel-max", type=int, default=DEFAULTS.channel_max)
    parser.add_argument("--z-dim", type=int, default=DEFAULTS.z_dim)
    parser.add_argument("--w-dim", type=int, default=DEFAULTS.w_dim)
    parser.add_argument("--mapping-layers", type=int, default=DEFAULTS.mapping_layers)
    parser.add_argument("--lr", type=float, default=DEFAULTS.lr)
    parser.add_argument("--r1-gamma", type=float, default=DEFAULTS.r1_gamma)
    parser.add_argument("--ema-kimg", type=float, default=DEFAULTS.ema_kimg)
    parser.add_argument(
        "--augment",
        default=",".join(DEFAULTS.augment),
        help=f"comma-separated DiffAugment policy from {AUGMENTATIONS}, or '' for none",
    )
    parser.add_argument("--checkpoint-every", type=int, default=500, help="iterations")
    parser.add_argument(
        "--snapshot-every",
        type=int,
        help="also keep a copy of the teacher every this many iterations, as "
        "<snapshot-dir>/<out stem>-<iteration>.pt (teachers along training, for "
        "benchmarks/teacher_curve.py)",
    )
    parser.add_argument(
        "--snapshot-dir", type=Path, help="folder of the snapshots (default: beside --out)"
    )
    parser.add_argument("--state", type=Path, help="training state (default <out>.state.pt)")
    parser.add_argument("--grid", type=Path, help="sample grid PNG (default <out>.png)")
    parser.add_argument("--resume", action="store_true", help="continue from --state if present")
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    return parser.parse_args()


def load_folder_images(folder: Path, resolution: int) -> np.ndarray:
    """Every image of an image-folder tree, centre-cropped square and resized: uint8 NHWC."""
    images = []
    for path, _ in ImageFolder(folder).samples:
        with Image.open(path) as image:
            image = image.convert("RGB")
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        images.append(np.asarray(image.resize((resolution, resolution), Image.LANCZOS)))
    return np.stack(images)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = TeacherTrainingConfig(
        resolution=args.resolution,
        z_dim=args.z_dim,
        w_dim=args.w_dim,
        mapping_layers=args.mapping_layers,
        channel_base=args.channel_base,
        channel_max=args.channel_max,
        batch_size=args.batch,
        lr=args.lr,
        r1_gamma=args.r1_gamma,
        ema_kimg=args.ema_kimg,
        augment=tuple(name for name in args.augment.split(",") if name),
    )
    if args.data is None:
        source = f"embedded digits, train split, rendering {DigitsRendering().fingerprint()}"
        images = load_embedded_digits().train.images
    else:
        source = f"image folder {args.data.name}"
        images = load_folder_images(args.data, args.resolution)
    trainer = TeacherTrainer(
        images_to_training_tensor(images, config.resolution), config, args.seed
    )
    state_path = args.state or args.out.with_suffix(".state.pt")
    grid_path = args.grid or args.out.with_suffix(".png")
    if args.resume and state_path.exists():
        trainer.load_state_dict(load_training_state(state_path))
        print(f"resumed from {state_path} at iteration {trainer.iteration}")
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def extra() -> dict:
        return {
            "trained_by": "scripts/teacher/train_teacher.py",
            "data": source,
            "num_images": len(images),
            "iterations": trainer.iteration,
            "images_seen": trainer.images_seen,
            "seed": args.seed,
            "config": dataclasses.asdict(config),
        }

    def save() -> None:
        save_training_state(trainer, state_path)
        save_teacher_checkpoint(trainer.G_ema, args.out, extra())
        sample_grid(trainer.G_ema, grid_path)

    def snapshot() -> None:
        folder = args.snapshot_dir or args.out.parent
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{args.out.stem}-{trainer.iteration:06d}.pt"
        save_teacher_checkpoint(trainer.G_ema, path, extra())

    print(f"training on {len(images)} images ({source}); {config}")
    start, start_iteration = time.monotonic(), trainer.iteration
    progress = tqdm(total=args.iters, initial=trainer.iteration, mininterval=10, smoothing=0.05)
    while trainer.iteration < args.iters:
        stats = trainer.step()
        progress.update(1)
        progress.set_postfix({key: f"{value:.3g}" for key, value in stats.items()}, refresh=False)
        if trainer.iteration % args.checkpoint_every == 0:
            save()
        if args.snapshot_every and trainer.iteration % args.snapshot_every == 0:
            snapshot()
        if args.minutes is not None and time.monotonic() - start > 60 * args.minutes:
            break
    progress.close()
    save()
    elapsed = time.monotonic() - start
    done = trainer.iteration - start_iteration
    print(
        f"iteration {trainer.iteration} ({trainer.images_seen} images seen): {done} iterations in "
        f"{elapsed / 60:.1f} min ({done / elapsed:.2f} it/s); wrote {args.out}, {grid_path}, "
        f"{state_path}"
    )


if __name__ == "__main__":
    main()
