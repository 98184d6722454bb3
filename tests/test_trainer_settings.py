"""Trainer settings: top-level config keys that are ``Trainer`` arguments pass through (as in
solo-learn's ``main_pretrain.py``), keys the run owns are refused, CPU adaptations win."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf
from tiny_pretrain import tiny_config, write_inputs

from solo_sqsp.config import ConfigError
from solo_sqsp.training.pretrain import run_pretrain
from solo_sqsp.training.trainer_settings import lightning_settings


def settings_cfg(**keys):
    base = {"devices": 1, "num_nodes": 1, "max_epochs": 2, "accelerator": "cpu"}
    return OmegaConf.create({**base, **keys, "method": "sqsp", "optimizer": {"lr": 0.1}})


def test_trainer_arguments_pass_through_and_defaults_yield():
    cfg = settings_cfg(gradient_clip_val=0.5, log_every_n_steps=3, num_sanity_val_steps=2)
    settings = lightning_settings(cfg, defaults={"num_sanity_val_steps": 0, "benchmark": False})
    assert settings["gradient_clip_val"] == 0.5 and settings["log_every_n_steps"] == 3
    assert settings["num_sanity_val_steps"] == 2  # the user's value over the entry point's
    assert settings["benchmark"] is False
    assert "method" not in settings and "optimizer" not in settings


def test_computed_arguments_are_left_to_the_caller_and_cpu_adaptation_wins():
    cfg = settings_cfg(limit_train_batches=3, precision="16-mixed", sync_batchnorm=True)
    settings = lightning_settings(cfg, computed=("limit_train_batches",))
    assert "limit_train_batches" not in settings
    assert settings["precision"] == "32-true" and settings["sync_batchnorm"] is False


@pytest.mark.parametrize("key", ["callbacks", "logger", "enable_checkpointing"])
def test_arguments_the_run_owns_are_refused(key):
    with pytest.raises(ConfigError, match=f"{key} cannot be set in the config"):
        lightning_settings(settings_cfg(**{key: False}))


def test_max_steps_from_the_config_ends_the_run(tmp_path: Path):
    inputs = write_inputs(tmp_path)  # 16 images at batch 8: 2 steps an epoch
    extra = ["max_epochs=3", "++max_steps=3", "++gradient_clip_val=1.0"]
    metrics = run_pretrain(tiny_config(inputs, tmp_path / "runs", extra))
    assert metrics["steps"] == 3
