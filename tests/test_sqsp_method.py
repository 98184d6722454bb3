"""The ``sqsp`` method end to end: every pretrain config family runs a short CPU fit on tiny
stand-in data in the real on-disk formats, and the configs carry the paper's Table 6 values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from small_generator import small_generator
from standin_data import trust_checksums, write_cifar, write_image_folder, write_stl10
from tiny_pretrain import tiny_config, write_inputs
from torchvision.datasets import CIFAR10, CIFAR100, STL10

from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.methods import get_method
from solo_sqsp.methods.sqsp import split_batch
from solo_sqsp.teachers.network_pickle import save_teacher_checkpoint
from solo_sqsp.training.pretrain import run_pretrain

PRETRAIN = REPO_ROOT / "scripts" / "pretrain"
# Paper, Table 6: batch size, epochs, base lr, weight decay, crop, sim/var/cov weights, a.
TABLE6 = {
    "cifar10/sqsp_cifar10": (512, 800, 0.03, 5e-4, 32, 25.0, 25.0, 1.0, 0.5),
    "cifar100/sqsp_cifar100": (512, 800, 0.03, 5e-4, 32, 10.0, 10.0, 1.0, 0.5),
    "stl10/sqsp_stl10": (512, 200, 0.05, 1e-4, 64, 25.0, 25.0, 1.0, 0.5),
    "imagenet-100/sqsp_imagenet100": (256, 100, 0.05, 1e-4, 96, 25.0, 25.0, 1.0, 0.5),
    "imagenet/sqsp_imagenet": (256, 100, 0.05, 1e-4, 96, 25.0, 25.0, 1.0, 0.5),
}
# Small widths so a CPU step takes a fraction of a second; the structure is the paper's.
SMALL = [
    "method_kwargs.squeeze.hidden_dim=64",
    "method_kwargs.squeeze.out_dim=64",
    "method_kwargs.proj_output_dim=64",
    "accelerator=cpu",
    "devices=1",
    "data.num_workers=0",
    "knn_eval.k=3",
    "++limit_train_batches=2",
    "++limit_val_batches=1",
]
# The 32 px test teacher serves the 64 and 96 px configs only when up-sampling is allowed.
UPSAMPLE_TEACHER = "++method_kwargs.teacher.allow_upsampling=True"


def compose_config(name: str, overrides: list[str]) -> DictConfig:
    folder, config = name.split("/")
    with initialize_config_dir(config_dir=str(PRETRAIN / folder), version_base="1.2"):
        return compose(config, overrides=overrides)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small StyleGAN2 teacher (32 px, 4 blocks) saved in our checkpoint format."""
    generator = small_generator(channel_base=128, channel_max=16)
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_teacher_checkpoint(generator, path)
    return path


def pretrain(name: str, data: list[str], teacher: Path, out: Path, extra=()) -> dict:
    cfg = compose_config(
        name,
        [
            *SMALL,
            *data,
            f"method_kwargs.teacher.path={teacher}",
            f"checkpoint.dir={out}",
            "max_epochs=1",
            *extra,
        ],
    )
    return run_pretrain(cfg)


def check_run(metrics: dict) -> None:
    assert metrics["epochs"] == 1 and metrics["steps"] >= 1
    for key in ("val_acc1", "val_knn_acc1"):
        assert 0.0 <= metrics[key] <= 100.0
    run_dir = Path(metrics["run_dir"])
    written = json.loads((run_dir / "metrics.json").read_text())
    assert written["val_acc1"] == metrics["val_acc1"]
    checkpoint = torch.load(run_dir / "last.ckpt", weights_only=True)
    keys = checkpoint["state_dict"].keys()
    assert any(k.startswith("backbone.") for k in keys)
    assert any(k.startswith("squeeze.") for k in keys)
    assert not any("teacher" in k or "synthesis" in k or "mapping" in k for k in keys)
    assert checkpoint["sqsp_synthetic_state"]["step"] == metrics["steps"]


@pytest.mark.parametrize("name", sorted(TABLE6))
def test_configs_carry_table6_values(name: str) -> None:
    cfg = compose_config(name, [])
    batch, epochs, lr, wd, crop, sim, var, cov, ratio = TABLE6[name]
    kwargs = cfg.method_kwargs
    assert cfg.method == "sqsp"
    assert (cfg.optimizer.batch_size, cfg.max_epochs) == (batch, epochs)
    assert (cfg.optimizer.lr, cfg.optimizer.weight_decay) == (lr, wd)
    assert cfg.optimizer.name == "sgd" and cfg.optimizer.kwargs.momentum == 0.9
    assert cfg.scheduler.name == "warmup_cosine" and cfg.scheduler.warmup_epochs == 0
    assert cfg.augmentations[0].crop_size == crop
    assert (kwargs.sim_loss_weight, kwargs.var_loss_weight, kwargs.cov_loss_weight) == (
        sim,
        var,
        cov,
    )
    assert kwargs.syn_ratio == ratio and kwargs.squeeze.depth == 3 and kwargs.proj_layers == 5
    assert cfg.backbone.name == ("resnet50" if "imagenet" in name else "resnet18")
    blur = cfg.augmentations[0].gaussian_blur.prob
    assert blur == (0.0 if "cifar" in name else 0.5)  # MoCo-v2 aug, without blur on CIFAR
    squeeze_only = compose_config(name.replace("sqsp_", "squeeze_"), [])
    assert squeeze_only.method_kwargs.syn_ratio == 1.0


def test_split_batch_follows_table6_and_rejects_impossible_splits() -> None:
    assert split_batch(512, 0.5) == (256, 256)
    assert split_batch(256, 1.0) == (256, 0)
    assert split_batch(10, 0.25) == (2, 8)
    with pytest.raises(ValueError, match=r"syn_ratio must be in \(0, 1\]"):
        split_batch(512, 0.0)
    with pytest.raises(ValueError, match="raise the batch size"):
        split_batch(3, 0.5)


def test_cifar10_and_squeeze_only(tmp_path, monkeypatch, teacher_file) -> None:
    standin = write_cifar(tmp_path / "cifar", CIFAR10, train_per_file=8, num_test=8)
    trust_checksums(monkeypatch, CIFAR10, standin)
    data = [f"data.train_path={standin.root}", f"data.val_path={standin.root}"]
    for name in ("cifar10/sqsp_cifar10", "cifar10/squeeze_cifar10"):
        metrics = pretrain(name, data, teacher_file, tmp_path / "runs", ["optimizer.batch_size=8"])
        check_run(metrics)


def test_cifar100(tmp_path, monkeypatch, teacher_file) -> None:
    standin = write_cifar(tmp_path / "cifar", CIFAR100, train_per_file=20, num_test=8)
    trust_checksums(monkeypatch, CIFAR100, standin)
    data = [f"data.train_path={standin.root}", f"data.val_path={standin.root}"]
    metrics = pretrain(
        "cifar100/sqsp_cifar100", data, teacher_file, tmp_path / "runs", ["optimizer.batch_size=8"]
    )
    check_run(metrics)


def test_stl10_at_64px(tmp_path, monkeypatch, teacher_file) -> None:
    standin = write_stl10(tmp_path / "stl", num_train=10, num_unlabeled=10, num_test=10)
    trust_checksums(monkeypatch, STL10, standin)
    data = [f"data.train_path={standin.root}", f"data.val_path={standin.root}"]
    metrics = pretrain(
        "stl10/sqsp_stl10",
        data,
        teacher_file,
        tmp_path / "runs",
        ["optimizer.batch_size=8", UPSAMPLE_TEACHER],
    )
    check_run(metrics)


@pytest.mark.parametrize(
    ("name", "num_classes"),
    [("imagenet-100/sqsp_imagenet100", 100), ("imagenet/sqsp_imagenet", 1000)],
)
def test_imagenet_folders_with_resnet50(tmp_path, teacher_file, name, num_classes) -> None:
    classes = [f"n{index:08d}" for index in range(num_classes)]
    train = write_image_folder(tmp_path / "train", classes, per_class=1, size=(24, 24))
    val = write_image_folder(tmp_path / "val", classes, per_class=1, size=(24, 24), seed=1)
    data = [f"data.train_path={train}", f"data.val_path={val}"]
    metrics = pretrain(
        name, data, teacher_file, tmp_path / "runs", ["optimizer.batch_size=4", UPSAMPLE_TEACHER]
    )
    check_run(metrics)


def test_teacher_stays_out_of_training(teacher_file) -> None:
    cfg = compose_config(
        "cifar10/sqsp_cifar10",
        [*SMALL, f"method_kwargs.teacher.path={teacher_file}", "optimizer.batch_size=8"],
    )
    from solo_sqsp.config import parse_cfg

    model = get_method("sqsp")(parse_cfg(cfg))
    trained = {id(p) for group in model.learnable_params for p in group["params"]}
    assert {id(p) for p in model.squeeze.parameters()} <= trained
    assert not {id(p) for p in model.teacher.generator.parameters()} & trained
    assert not any(k.startswith("teacher") for k in model.state_dict())
    assert (model.num_syn, model.real_batch_size) == (4, 4)


def test_squeeze_only_student_never_learns_from_real_images(tmp_path) -> None:
    """Squeeze only (a = 1), as the reference code: two runs whose real images differ end with
    the same student (backbone, projector and squeeze weights, BN running statistics); only the
    online classifier, which reads the real images through an eval-mode backbone, differs."""
    inputs = write_inputs(tmp_path)
    other = write_image_folder(tmp_path / "other", ["a", "b"], per_class=8, size=(32, 32), seed=7)
    states = []
    for name, train in (("first", inputs["train"]), ("second", other)):
        cfg = tiny_config(
            {**inputs, "train": train},
            tmp_path / name,
            ["method_kwargs.syn_ratio=1.0", "method_kwargs.proj_layers=2"],
        )
        metrics = run_pretrain(cfg)
        assert metrics["steps"] == 2
        checkpoint = torch.load(Path(metrics["run_dir"]) / "last.ckpt", weights_only=True)
        states.append(checkpoint["state_dict"])
    first, second = states
    student = [key for key in first if not key.startswith("classifier.")]
    assert any(key.startswith("projector.") and key.endswith("running_mean") for key in student)
    assert int(first["backbone.bn1.num_batches_tracked"]) == 2  # one synthetic batch a step
    for key in student:
        assert torch.equal(first[key], second[key]), key
    assert not torch.equal(first["classifier.weight"], second["classifier.weight"])


def run_main(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "main_pretrain.py"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
    )


def test_config_name_resolves_without_config_path(tmp_path) -> None:
    shown = run_main(["--config-name", "sqsp_stl10", "--cfg", "job"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "method: sqsp" in shown.stdout and "max_epochs: 200" in shown.stdout
    assert "crop_size: 64" in shown.stdout and "lr: 0.05" in shown.stdout


def test_two_rank_ddp_on_cpu(tmp_path, teacher_file) -> None:
    """A real 2-process gloo run: data sharded, one stream per rank, metrics written once."""
    train = write_image_folder(tmp_path / "train", ["a", "b", "c"], per_class=12, size=(32, 32))
    val = write_image_folder(tmp_path / "val", ["a", "b", "c"], per_class=4, size=(32, 32))
    done = run_main(
        [
            "--config-name",
            "sqsp_custom",
            *[arg for arg in SMALL if "limit_" not in arg and not arg.startswith("devices")],
            "devices=2",
            "strategy=ddp",
            f"data.train_path={train}",
            f"data.val_path={val}",
            f"method_kwargs.teacher.path={teacher_file}",
            "optimizer.batch_size=8",
            "max_epochs=1",
            f"checkpoint.dir={tmp_path / 'runs'}",
        ],
        tmp_path,
    )
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-3000:]
    assert "rank 0 draws synthetic stream (seed=0, rank=0)" in log
    assert "rank 1 draws synthetic stream (seed=0, rank=1)" in log
    (run_dir,) = (tmp_path / "runs" / "sqsp").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["steps"] == 36 // (8 * 2)  # one epoch = len(real) / (B x ranks) steps
    assert 0.0 <= metrics["val_knn_acc1"] <= 100.0


@pytest.mark.solo
def test_registered_in_solo_learn_methods() -> None:
    """With solo-learn's source on PYTHONPATH, ``import solo_sqsp`` puts ``sqsp`` in its registry
    and the method subclasses solo-learn's own BaseMethod."""
    solo_methods = pytest.importorskip("solo.methods")
    from solo.methods.base import BaseMethod as SoloBaseMethod

    from solo_sqsp.methods import ACTIVE_BASE, SqueezeAndSpan

    assert ACTIVE_BASE == "solo-learn"
    assert solo_methods.METHODS["sqsp"] is SqueezeAndSpan
    assert issubclass(SqueezeAndSpan, SoloBaseMethod)
