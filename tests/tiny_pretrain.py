"""A CPU-sized ``sqsp`` pretraining setup for tests of the run machinery (failures, resume,
checkpoints): the ``sqsp_custom`` config with tiny widths, a 2-class 32 px image folder and a
small StyleGAN2 teacher; the same overrides serve ``run_pretrain`` and ``main_pretrain.py``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from small_generator import small_generator
from standin_data import write_image_folder

from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.teachers.network_pickle import save_teacher_checkpoint

CONFIG = "sqsp_custom"
TINY = [
    "method_kwargs.squeeze.hidden_dim=32",
    "method_kwargs.squeeze.out_dim=32",
    "method_kwargs.proj_output_dim=32",
    "accelerator=cpu",
    "devices=1",
    "strategy=auto",
    "precision=32-true",
    "sync_batchnorm=False",
    "data.num_workers=0",
    "knn_eval.enabled=False",
    "optimizer.batch_size=8",
    "max_epochs=1",
]


def write_inputs(root: Path) -> dict[str, Path]:
    """``train``: 2 classes x 8 images of 32 px; ``teacher``: a 32 px StyleGAN2 checkpoint."""
    teacher = root / "teacher.pt"
    save_teacher_checkpoint(small_generator(channel_base=128, channel_max=16), teacher)
    train = write_image_folder(root / "train", ["a", "b"], per_class=8, size=(32, 32))
    return {"train": train, "teacher": teacher}


def overrides_for(inputs: dict[str, Path], out: Path, extra: list[str]) -> list[str]:
    """``TINY`` plus data, teacher, ``checkpoint.dir=out`` and ``extra`` (later ones win)."""
    return [
        *TINY,
        f"data.train_path={inputs['train']}",
        f"method_kwargs.teacher.path={inputs['teacher']}",
        f"checkpoint.dir={out}",
        *extra,
    ]


def tiny_config(inputs: dict[str, Path], out: Path, extra: list[str]) -> DictConfig:
    config_dir = REPO_ROOT / "scripts" / "pretrain" / "custom"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.2"):
        return compose(CONFIG, overrides=overrides_for(inputs, out, extra))


def main_pretrain_command(inputs: dict[str, Path], out: Path, extra: list[str]) -> list[str]:
    """The ``python main_pretrain.py`` command line of ``tiny_config(inputs, out, extra)``."""
    return [
        sys.executable,
        str(REPO_ROOT / "main_pretrain.py"),
        "--config-name",
        CONFIG,
        *overrides_for(inputs, out, extra),
    ]


def subprocess_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_main_pretrain(
    inputs: dict[str, Path], out: Path, extra: list[str], cwd: Path, **kwargs
) -> subprocess.CompletedProcess:
    return subprocess.run(
        main_pretrain_command(inputs, out, extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=subprocess_env(),
        **kwargs,
    )
