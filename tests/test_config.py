"""parse_cfg: solo-learn's defaults and derived keys; ``devices`` that Lightning's CPU accepts."""

from __future__ import annotations

import copy
from pathlib import Path

import lightning.pytorch as pl
import pytest
from omegaconf import OmegaConf

from solo_sqsp.config import ConfigError, count_devices, parse_cfg


def pretrain_cfg(**overrides):
    pipeline = {"rrc": {"enabled": True}, "crop_size": 32, "num_crops": 2}
    cfg = OmegaConf.create(
        {
            "method": "sqsp",
            "backbone": {"name": "resnet18"},
            "data": {"dataset": "digits"},
            "augmentations": [pipeline],
            "optimizer": {
                "name": "sgd",
                "batch_size": 64,
                "lr": 0.03,
                "classifier_lr": 0.1,
                "weight_decay": 5e-4,
            },
            "scheduler": {"name": "warmup_cosine"},
            "max_epochs": 10,
            "accelerator": "cpu",
            "devices": 1,
        }
    )
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


def test_defaults_and_derived_keys():
    small = {"crop_size": 16, "num_crops": 4}
    cfg = parse_cfg(pretrain_cfg(augmentations=[{"crop_size": 32, "num_crops": 2}, small]))
    assert cfg.data.num_classes == 10
    assert (cfg.data.num_large_crops, cfg.data.num_small_crops) == (2, 4)
    assert cfg.optimizer.lr == pytest.approx(0.03 * 64 / 256)
    assert cfg.optimizer.classifier_lr == pytest.approx(0.1 * 64 / 256)
    assert cfg.optimizer.kwargs == {"momentum": 0.9}
    assert cfg.data.train_path is None and cfg.data.val_path is None
    assert cfg.data.format == "image_folder" and cfg.data.fraction == -1
    assert cfg.checkpoint == {
        "enabled": False,
        "dir": "trained_models",
        "frequency": 1,
        "keep_prev": False,
    }
    assert cfg.auto_resume == {"enabled": False, "max_hours": 36}
    assert cfg.wandb.enabled is False and cfg.seed == 5 and cfg.num_nodes == 1
    assert cfg.strategy is None and cfg.resume_from_checkpoint is None


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("lars", {"momentum": 0.9, "eta": 1e-3, "clip_lr": False, "exclude_bias_n_norm": False}),
        ("adamw", {"betas": [0.9, 0.999]}),
        ("adam", {}),
    ],
)
def test_optimizer_kwargs_defaults(name: str, kwargs: dict):
    assert parse_cfg(pretrain_cfg(**{"optimizer.name": name})).optimizer.kwargs == kwargs


def test_user_values_are_kept():
    cfg = parse_cfg(
        pretrain_cfg(**{"optimizer.name": "lars", "optimizer.kwargs": {"eta": 0.02}, "seed": 1})
    )
    assert cfg.optimizer.kwargs.eta == 0.02 and cfg.optimizer.kwargs.momentum == 0.9
    assert cfg.seed == 1


@pytest.mark.parametrize(
    ("devices", "count"), [(2, 2), ("2", 2), ([0, 1], 2), ("0,1", 2), ("auto", 1), ([3], 1)]
)
def test_devices_on_cpu_become_a_count(devices, count: int):
    cfg = parse_cfg(pretrain_cfg(devices=devices, num_nodes=2))
    assert cfg.devices == count
    assert cfg.optimizer.lr == pytest.approx(0.03 * 64 * count * 2 / 256)


def test_lightning_cpu_accepts_the_normalised_devices():
    raw = pretrain_cfg(devices=[0, 1])
    with pytest.raises(TypeError, match="should be an int"):
        pl.Trainer(accelerator="cpu", devices=raw.devices, logger=False)
    cfg = parse_cfg(copy.deepcopy(raw))
    trainer = pl.Trainer(accelerator="cpu", devices=cfg.devices, logger=False)
    assert trainer.num_devices == 2


def test_gpu_device_lists_are_kept():
    cfg = parse_cfg(pretrain_cfg(accelerator="gpu", devices=[0, 1, 2]))
    assert list(cfg.devices) == [0, 1, 2]
    assert cfg.optimizer.lr == pytest.approx(0.03 * 64 * 3 / 256)
    assert count_devices(-1, on_cpu=False) >= 1


@pytest.mark.parametrize("devices", [0, -1, [], True, "many"])
def test_bad_devices_are_named(devices):
    with pytest.raises(ConfigError, match="devices"):
        parse_cfg(pretrain_cfg(devices=devices))


def test_custom_dataset_counts_class_folders(tmp_path: Path):
    for name in ("cat", "dog", "fox"):
        (tmp_path / name).mkdir()
    (tmp_path / "notes.txt").write_text("not a class")
    cfg = parse_cfg(pretrain_cfg(**{"data.dataset": "custom", "data.train_path": str(tmp_path)}))
    assert cfg.data.num_classes == 3
    explicit = {"data.dataset": "custom", "data.train_path": "x", "data.num_classes": 7}
    assert parse_cfg(pretrain_cfg(**explicit)).data.num_classes == 7


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data.dataset": "mnist"}, "data.dataset='mnist' is not supported"),
        ({"data.dataset": "cifar10"}, "'data.train_path' is required"),
        ({"augmentations": []}, "'augmentations' must be a non-empty list"),
        ({"augmentations": [{"crop_size": 32}]}, r"augmentations\[0\] has no 'num_crops'"),
        ({"optimizer.classifier_lr": None}, "'optimizer.classifier_lr' is required"),
        ({"optimizer.name": "rmsprop"}, "optimizer.name='rmsprop' is not supported"),
        ({"method": "???"}, "'method' is required"),
        ({"data.dataset": "stl10", "data.train_path": ".", "data.format": "dali"}, "dali"),
        (
            {"optimizer.name": "adamw", "optimizer.kwargs": {"momentum": 0.9}},
            r"optimizer.kwargs.momentum not taken by optimizer.name='adamw' \(AdamW\); it takes "
            r"amsgrad, betas, .*'~optimizer.kwargs.momentum'",
        ),
        ({"optimizer.kwargs": {"lr": 0.1}}, "optimizer.kwargs.lr not taken by"),
    ],
)
def test_bad_configs_are_named(overrides: dict, message: str):
    with pytest.raises(ConfigError, match=message):
        parse_cfg(pretrain_cfg(**overrides))


@pytest.mark.solo
def test_agrees_with_solo_learn_parse_cfg():
    solo_pretrain = pytest.importorskip("solo.args.pretrain")
    overrides = {
        "data.dataset": "cifar100",
        "data.train_path": ".",
        "data.val_path": ".",
        "accelerator": "gpu",
        "devices": [0, 1],
        "optimizer.name": "lars",
        "augmentations": [{"crop_size": 32, "num_crops": 2}, {"crop_size": 24, "num_crops": 3}],
    }
    ours = parse_cfg(pretrain_cfg(**overrides))
    theirs = solo_pretrain.parse_cfg(pretrain_cfg(**overrides))
    for key in (
        "data.num_classes",
        "data.num_large_crops",
        "data.num_small_crops",
        "optimizer.lr",
        "optimizer.classifier_lr",
        "optimizer.kwargs",
        "checkpoint",
        "auto_resume.enabled",
        "auto_resume.max_hours",
        "seed",
        "num_nodes",
    ):
        assert OmegaConf.select(ours, key) == OmegaConf.select(theirs, key), key
