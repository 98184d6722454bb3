"""Linear and k-NN evaluation of pretraining checkpoints.

A real pretraining run (``solo_sqsp.training.pretrain.run_pretrain`` with a tiny registered method,
one epoch on stand-in CIFAR-10 files) writes the checkpoint and ``args.json`` that everything here
evaluates: loading it the way solo-learn's ``main_linear.py`` does, ``main_linear.py`` and
``main_knn.py`` end to end, the frozen-backbone protocol, and the one-line errors for bad input.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import runpy
import shutil
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from standin_data import trust_checksums, write_cifar
from torch.utils.data import DataLoader, TensorDataset
from torchvision.datasets import CIFAR10

from solo_sqsp.config import ConfigError
from solo_sqsp.evaluation import CheckpointError, load_frozen_backbone
from solo_sqsp.evaluation.knn import knn_sweep, parse_knn_cfg
from solo_sqsp.evaluation.linear import parse_linear_cfg
from solo_sqsp.evaluation.linear_model import LinearModel, build_linear_model
from solo_sqsp.methods import base
from solo_sqsp.metrics.knn_classifier import WeightedKNNClassifier
from solo_sqsp.models.backbones import build_backbone
from solo_sqsp.training.pretrain import run_pretrain

REPO = Path(__file__).resolve().parent.parent
CROP = 16  # CIFAR images evaluated at 16 px: a quarter of the compute of 32 px
TRAIN_PER_FILE, NUM_TEST, BATCH = 4, 20, 4
NUM_TRAIN = 5 * TRAIN_PER_FILE  # CIFAR-10 has 5 training files


class TinyPretrain(base.BaseMethod):
    """Base method plus a small invariance + variance loss on the two views' features, so that
    the backbone trains as in a real method."""

    def training_step(self, batch, batch_idx):
        out = super().training_step(batch, batch_idx)
        z1, z2 = out["feats"][:2]
        variance = torch.relu(1 - torch.sqrt(z1.var(0) + 1e-4)).mean()
        return out["loss"] + F.mse_loss(z1, z2) + variance


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory):
    """Stand-in CIFAR-10 files, trusted by torchvision's reader for the whole module."""
    root = tmp_path_factory.mktemp("cifar")
    standin = write_cifar(root, CIFAR10, train_per_file=TRAIN_PER_FILE, num_test=NUM_TEST)
    with pytest.MonkeyPatch.context() as monkeypatch:
        trust_checksums(monkeypatch, CIFAR10, standin)
        yield root


@pytest.fixture(scope="module")
def pretrain_run(cifar_root, tmp_path_factory) -> Path:
    """The run folder of a one-epoch pretraining (checkpoint enabled), as main_pretrain writes."""
    base.register_method("tiny_pretrain_eval_test", TinyPretrain)
    augmentations = OmegaConf.load(
        REPO / "scripts/pretrain/cifar10/augmentations/mocov2_noblur.yaml"
    )
    augmentations[0].crop_size = CROP
    cfg = OmegaConf.create(
        {
            "name": "tiny",
            "method": "tiny_pretrain_eval_test",
            "backbone": {"name": "resnet18"},
            "data": {
                "dataset": "cifar10",
                "train_path": str(cifar_root),
                "val_path": str(cifar_root),
                "num_workers": 0,
            },
            "augmentations": augmentations,
            "optimizer": {
                "name": "sgd",
                "batch_size": BATCH,
                "lr": 0.05,
                "classifier_lr": 0.1,
                "weight_decay": 1e-4,
            },
            "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0, "interval": "epoch"},
            "checkpoint": {"enabled": True, "dir": str(tmp_path_factory.mktemp("trained"))},
            "run_id": "test",
            "max_epochs": 1,
            "accelerator": "cpu",
            "devices": 1,
            "seed": 0,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = run_pretrain(cfg)
    return Path(metrics["run_dir"])


def eval_cfg(checkpoint, **overrides):
    cfg = OmegaConf.create({"pretrained_feature_extractor": str(checkpoint)})
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    return cfg


def run_script(script: str, *overrides: str) -> None:
    """``python <script> <overrides>`` in this process (the stand-in files stay trusted)."""
    argv = sys.argv
    sys.argv = [str(REPO / script), *overrides]
    try:
        runpy.run_path(str(REPO / script), run_name="__main__")
    finally:
        sys.argv = argv


def test_pretraining_checkpoint_loads_as_solo_learn_main_linear_does(pretrain_run):
    """solo-learn's main_linear: ``torch.load(path, map_location="cpu")`` (weights_only=True by
    default since torch 2.6), keys containing "backbone" renamed without "backbone.", the rest
    dropped; here the result must load with strict=True."""
    checkpoint = pretrain_run / "last.ckpt"
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    stripped = {key.replace("backbone.", ""): v for key, v in state.items() if "backbone" in key}
    args = json.loads((pretrain_run / "args.json").read_text())
    backbone, _ = build_backbone(args["backbone"]["name"], cifar_stem=True)
    backbone.load_state_dict(stripped, strict=True)

    initial, _ = build_backbone("resnet18", cifar_stem=True)
    assert any(  # the pretraining step changed the weights that were saved
        not torch.equal(value, initial.state_dict()[key]) for key, value in stripped.items()
    )


def test_load_frozen_backbone_from_run_folder(pretrain_run):
    pretrained = load_frozen_backbone(eval_cfg(pretrain_run, **{"backbone.name": "resnet18"}))
    assert pretrained.checkpoint == pretrain_run / "last.ckpt"
    assert (pretrained.spec.name, pretrained.spec.cifar_stem) == ("resnet18", True)
    assert pretrained.pretrain_args["method"] == "tiny_pretrain_eval_test"
    assert not pretrained.module.training
    assert not any(p.requires_grad for p in pretrained.module.parameters())
    saved = torch.load(pretrain_run / "last.ckpt", weights_only=True)["state_dict"]
    for key, value in pretrained.module.state_dict().items():
        assert torch.equal(value, saved[f"backbone.{key}"]), key


@pytest.mark.both_bases
def test_main_linear_end_to_end(pretrain_run, cifar_root, tmp_path):
    run_script(
        "main_linear.py",
        "--config-name",
        "linear_cifar10",
        f"pretrained_feature_extractor={pretrain_run / 'last.ckpt'}",
        f"data.train_path={cifar_root}",
        f"data.val_path={cifar_root}",
        "data.num_workers=0",
        f"data.crop_size={CROP}",
        f"optimizer.batch_size={BATCH}",
        "max_epochs=1",
        "accelerator=cpu",
        f"checkpoint.dir={tmp_path}",
        "checkpoint.enabled=False",
        "+run_id=test",
    )
    run_dir = tmp_path / "linear" / "sqsp-cifar10-linear-test"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("val_acc1", "val_acc5", "best_val_acc1"):
        assert isinstance(metrics[key], float) and 0.0 <= metrics[key] <= 100.0, key
    assert math.isfinite(metrics["val_loss"])
    assert metrics["val_acc1"] <= metrics["val_acc5"]
    assert metrics["best_val_acc1"] == metrics["val_acc1"]  # one epoch
    assert (metrics["epochs"], metrics["steps"]) == (1, NUM_TRAIN // BATCH)
    assert metrics["linear_implementation"] == base.ACTIVE_BASE
    assert (metrics["backbone"], metrics["cifar_stem"], metrics["crop_size"]) == (
        "resnet18",
        True,
        CROP,
    )
    args = json.loads((run_dir / "args.json").read_text())
    assert args["optimizer"]["lr"] == pytest.approx(30.0 * BATCH / 256)  # reference lr scaling


@pytest.mark.both_bases
def test_main_knn_end_to_end(pretrain_run, cifar_root, tmp_path):
    run_script(
        "main_knn.py",
        "--config-name",
        "knn_cifar10",
        f"pretrained_feature_extractor={pretrain_run}",
        f"data.train_path={cifar_root}",
        f"data.val_path={cifar_root}",
        "data.num_workers=0",
        f"data.crop_size={CROP}",
        "knn.batch_size=6",  # 20 images: the last batches are partial and must still count
        "knn.k=[1,5]",
        "knn.temperature=[0.07,0.1]",
        "accelerator=cpu",
        f"checkpoint.dir={tmp_path}",
        "+run_id=test",
    )
    metrics = json.loads((tmp_path / "knn/sqsp-cifar10-knn-test/metrics.json").read_text())
    assert (metrics["num_train"], metrics["num_val"]) == (NUM_TRAIN, NUM_TEST)
    settings = [(r["k"], r["distance_function"], r["temperature"]) for r in metrics["results"]]
    assert settings == [
        (k, distance, temperature)
        for k in (1, 5)
        for distance, temperatures in (("cosine", (0.07, 0.1)), ("euclidean", (None,)))
        for temperature in temperatures
    ]
    for result in metrics["results"]:
        assert 0.0 <= result["acc1"] <= result["acc5"] <= 100.0
    assert metrics["best"]["acc1"] == max(r["acc1"] for r in metrics["results"])
    # Hydra's disabled job logging disabled the package's loggers (made at import); the CLI
    # enables them again, so its warnings reach the user (and later tests' caplog)
    assert not logging.getLogger("solo_sqsp.methods.method_kwargs").disabled


def test_knn_sweep_matches_the_classifier_and_separates_classes():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(4, 8, generator=generator) * 4
    train_targets, test_targets = torch.arange(40) % 4, torch.arange(12) % 4
    train = centres[train_targets] + torch.randn(40, 8, generator=generator)
    test = centres[test_targets] + torch.randn(12, 8, generator=generator)
    results = knn_sweep(
        (train, train_targets), (test, test_targets), [3], [0.1], ["cosine", "euclidean"]
    )
    assert [r.temperature for r in results] == [0.1, None]
    reference = WeightedKNNClassifier(k=3, T=0.1, distance_fx="cosine")
    reference.update(train, train_targets, test, test_targets)
    assert results[0].acc1 == pytest.approx(reference.compute()[0])
    assert all(r.acc1 == 100.0 for r in results)  # well separated clusters


def linear_implementations() -> list:
    """Ours always; solo-learn's LinearModel when it imports."""
    implementations = [pytest.param(LinearModel, id="builtin")]
    try:
        from solo.methods.linear import LinearModel as SoloLinearModel
    except ImportError:
        return implementations
    return [*implementations, pytest.param(SoloLinearModel, id="solo-learn")]


@pytest.mark.parametrize("model_class", linear_implementations())
def test_linear_model_trains_classifier_only_with_reference_schedule(model_class):
    """Frozen backbone (weights and BatchNorm statistics untouched, as the reference code's
    sanity check requires), classifier trained, per-epoch cosine from the full rate."""
    torch.manual_seed(0)
    backbone, _ = build_backbone("resnet18", cifar_stem=True)
    backbone.requires_grad_(False)
    before = {key: value.clone() for key, value in backbone.state_dict().items()}
    cfg = OmegaConf.create(
        {
            "data": {"num_classes": 10},
            "max_epochs": 3,
            "optimizer": {"name": "sgd", "batch_size": 8, "lr": 0.5, "weight_decay": 0},
            "scheduler": {"name": "warmup_cosine", "warmup_epochs": 0, "interval": "epoch"},
        }
    )
    model = model_class(backbone, cfg=cfg)
    classifier_before = model.classifier.weight.detach().clone()
    images = torch.randn(8, 3, CROP, CROP, generator=torch.Generator().manual_seed(1))
    loader = DataLoader(TensorDataset(images, torch.arange(8) % 10), batch_size=8)
    lrs = []

    class RecordLr(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[RecordLr()],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, loader, loader)
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert not torch.equal(model.classifier.weight.detach(), classifier_before)
    assert lrs == pytest.approx([0.5 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)])
    assert 0.0 <= float(trainer.callback_metrics["val_acc1"]) <= 100.0


@pytest.mark.both_bases
def test_build_linear_model_follows_the_active_base():
    backbone, _ = build_backbone("resnet18", cifar_stem=True)
    cfg = OmegaConf.create(
        {
            "data": {"num_classes": 10},
            "max_epochs": 1,
            "optimizer": {"name": "sgd", "batch_size": 8, "lr": 0.1, "weight_decay": 0},
            "scheduler": {"name": "none"},
        }
    )
    model, implementation = build_linear_model(backbone, cfg)
    assert implementation == base.ACTIVE_BASE
    assert (type(model) is LinearModel) == (implementation == "builtin")
    assert model.classifier.bias.abs().sum() == 0
    assert model.classifier.weight.std().item() == pytest.approx(0.01, rel=0.2)


def save_state(path: Path, state_dict: dict, **extra) -> Path:
    torch.save({"state_dict": state_dict, **extra}, path)
    return path


def test_bad_checkpoints_fail_with_clear_errors(pretrain_run, tmp_path):
    def error_for(path, **overrides) -> str:
        with pytest.raises(CheckpointError) as raised:
            load_frozen_backbone(eval_cfg(path, **overrides))
        message = str(raised.value)
        assert "\n" not in message
        return message

    assert "is not set" in error_for(None)
    assert "does not exist" in error_for(tmp_path / "missing.ckpt")
    saved = (pretrain_run / "last.ckpt").read_bytes()
    for name, content in (
        ("notes.ckpt", b"not a checkpoint"),
        ("empty.ckpt", b""),
        ("noise.ckpt", torch.randint(0, 256, (3000,), dtype=torch.uint8).numpy().tobytes()),
        ("truncated.ckpt", saved[: len(saved) // 2]),
    ):
        (tmp_path / name).write_bytes(content)
        assert "is not a PyTorch checkpoint" in error_for(tmp_path / name), name
    head_only = save_state(tmp_path / "head.ckpt", {"classifier.weight": torch.zeros(10, 512)})
    assert "no backbone weights" in error_for(head_only)
    assert "found classifier." in error_for(head_only)

    # Name mismatch: args.json beside the checkpoint says resnet18.
    message = error_for(pretrain_run / "last.ckpt", **{"backbone.name": "resnet50"})
    assert "mismatch" in message and "'resnet18'" in message and "'resnet50'" in message
    # Without args.json, the weights themselves do not fit a resnet50.
    alone = tmp_path / "alone"
    alone.mkdir()
    shutil.copy(pretrain_run / "last.ckpt", alone / "model.ckpt")
    assert "do not fit resnet50" in error_for(alone, **{"backbone.name": "resnet50"})
    assert "backbone.name is required" in error_for(alone)
    stem_override = {"backbone.name": "resnet18", "backbone.cifar_stem": False}
    assert "conv1 is 3x3" in error_for(alone / "model.ckpt", **stem_override)


def test_checkpoint_that_weights_only_loading_refuses(pretrain_run, tmp_path):
    """What solo-learn's main_linear would also trip on, e.g. Lightning hyper-parameters stored
    as an OmegaConf object: named in the error."""
    state = torch.load(pretrain_run / "last.ckpt", weights_only=True)["state_dict"]
    path = save_state(tmp_path / "hparams.ckpt", state, hyper_parameters=OmegaConf.create({}))
    with pytest.raises(CheckpointError, match=r"weights_only=True\) refuses it.*omegaconf"):
        load_frozen_backbone(eval_cfg(path, **{"backbone.name": "resnet18"}))


def main_linear_error(pretrain_run: Path, tmp_path: Path, *overrides: str) -> str:
    """``main_linear.py``'s one-line exit message for ``overrides``; no run folder is left."""
    with pytest.raises(SystemExit) as raised:
        run_script(
            "main_linear.py",
            "--config-name",
            "linear_cifar10",
            f"pretrained_feature_extractor={pretrain_run}",
            "accelerator=cpu",
            f"checkpoint.dir={tmp_path}",
            *overrides,
        )
    assert not (tmp_path / "linear").exists()
    message = str(raised.value.code)
    assert "\n" not in message
    return message


def test_cli_reports_bad_input_in_one_line_before_training(pretrain_run, cifar_root, tmp_path):
    nowhere = tmp_path / "no-cifar-here"
    message = main_linear_error(
        pretrain_run, tmp_path, f"data.train_path={nowhere}", f"data.val_path={nowhere}"
    )
    assert message.startswith("main_linear.py: data.train_path=")

    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((pretrain_run / "last.ckpt").read_bytes()[:1000])
    message = main_linear_error(pretrain_run, tmp_path, f"+resume_from_checkpoint={truncated}")
    assert message.startswith("main_linear.py: resume_from_checkpoint=")
    assert "is not a readable Lightning checkpoint" in message

    # pretrained on colour images (no data.eval_grayscale in its args.json), evaluated in gray
    data = [f"data.train_path={cifar_root}", f"data.val_path={cifar_root}"]
    message = main_linear_error(pretrain_run, tmp_path, *data, "+data.eval_grayscale=True")
    assert "pretrained with data.eval_grayscale=False" in message
    assert "set data.eval_grayscale=False" in message

    missing = tmp_path / "missing.ckpt"
    result = subprocess.run(
        [
            sys.executable,
            "main_knn.py",
            "--config-name",
            "knn_cifar10",
            f"pretrained_feature_extractor={missing}",
            "accelerator=cpu",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"main_knn.py: pretrained_feature_extractor='{missing}' does not exist: pass the .ckpt "
        "written by main_pretrain.py (in <checkpoint.dir>/<method>/<name>-<id>/) or that folder"
    ]


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_gpu_config_on_a_cpu_machine_names_the_fix(pretrain_run):
    with pytest.raises(SystemExit) as raised:
        run_script(
            "main_knn.py",
            "--config-name",
            "knn_cifar10",
            f"pretrained_feature_extractor={pretrain_run}",
        )
    assert str(raised.value.code) == (
        "main_knn.py: accelerator='gpu' but torch sees no CUDA device: pass accelerator=cpu "
        "(or auto)"
    )


@pytest.mark.parametrize(
    ("parse", "override", "message"),
    [
        (parse_knn_cfg, {"knn.k": [0, 5]}, "knn.k="),
        (parse_knn_cfg, {"knn.temperature": ["warm"]}, "knn.temperature="),
        (parse_knn_cfg, {"knn.distance_function": ["manhattan"]}, "knn.distance_function="),
        (parse_knn_cfg, {"data.crop_size": 0}, "data.crop_size=0"),
        (parse_linear_cfg, {"optimizer.name": "rmsprop"}, "optimizer.name='rmsprop'"),
        (parse_linear_cfg, {"scheduler.name": "step"}, "needs scheduler.lr_decay_steps"),
        (parse_linear_cfg, {"max_epochs": None}, "'max_epochs' is required"),
    ],
)
def test_bad_eval_configs_name_the_key(parse, override, message):
    cfg = OmegaConf.create(
        {
            "data": {"dataset": "cifar10"},
            "max_epochs": 1,
            "optimizer": {"name": "sgd", "batch_size": 8, "lr": 0.1, "weight_decay": 0},
            "scheduler": {"name": "none"},
            "accelerator": "cpu",
        }
    )
    for key, value in override.items():
        OmegaConf.update(cfg, key, value, force_add=True)
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse(cfg)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"backbone": {"name": "resnet18", "kwargs": {"width_per_group": 2**20}}}, "not a valid"),
        ({"backbone": {"name": "resnet18", "kwargs": {"norm_layer": "x"}}}, "unknown key"),
        ({"backbone": {"name": "resnet18", "kwargs": {"groups": 2}}}, "cannot be built"),
        ({"backbone": ["resnet18"]}, "not a mapping"),
        ({"backbone": {"name": ["x" * 10**5]}}, "not a name"),
        ("[" * 100_000 + "]" * 100_000, "not valid JSON"),
    ],
)
def test_hostile_args_json_is_refused_before_allocation(pretrain_run, tmp_path, args, message):
    """args.json values never reach torchvision unchecked (issue 15): a short CheckpointError."""
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(pretrain_run / "last.ckpt", folder / "last.ckpt")
    text = args if isinstance(args, str) else json.dumps(args)
    (folder / "args.json").write_text(text)
    with pytest.raises(CheckpointError, match=message) as raised:
        load_frozen_backbone(eval_cfg(folder))
    assert len(str(raised.value)) < 1000
    assert load_frozen_backbone(eval_cfg(pretrain_run)).spec.name == "resnet18"


def test_nested_checkpoint_pickle_is_refused_without_crashing(tmp_path):
    """A million nested tuples as a dict key in data.pkl segfaults torch.load's hashing; the
    pre-scan refuses it first."""
    saved = tmp_path / "saved.ckpt"
    torch.save({}, saved)
    hostile = tmp_path / "nested.ckpt"
    nested = b"\x80\x02}" + b")" + b"\x85" * 1_000_000 + b"Ns."
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(hostile, "w") as target:
        for info in source.infolist():
            is_pickle = info.filename.endswith("/data.pkl")
            target.writestr(info, nested if is_pickle else source.read(info))
    with pytest.raises(CheckpointError, match="deeper than"):
        load_frozen_backbone(eval_cfg(hostile, **{"backbone.name": "resnet18"}))


def test_checkpoint_entries_are_checked_by_type(tmp_path):
    """State dicts whose keys are not names or whose backbone entries are not tensors end in a
    CheckpointError, not a raw AttributeError (issue 15)."""
    cfg = {"backbone.name": "resnet18"}
    wrong_value = save_state(tmp_path / "value.ckpt", {"backbone.conv1.weight": 5})
    with pytest.raises(CheckpointError, match="are not tensors"):
        load_frozen_backbone(eval_cfg(wrong_value, **cfg))
    wrong_key = save_state(tmp_path / "key.ckpt", {("backbone", 1): torch.zeros(1)})
    with pytest.raises(CheckpointError, match="keys that are not names"):
        load_frozen_backbone(eval_cfg(wrong_key, **cfg))
