"""Loggers as in solo-learn: wandb (offline here) with a learning-rate monitor, TensorBoard, and
the CSV log always; an enabled logger whose package is missing, and the solo-learn switches this
package does not implement, fail before any run folder exists."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from tiny_pretrain import tiny_config, write_inputs

from solo_sqsp.config import ConfigError
from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.training.pretrain import run_pretrain


def test_wandb_offline_and_tensorboard_log_beside_the_csv(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    inputs = write_inputs(tmp_path)
    extra = [
        "max_epochs=1",
        "++wandb.enabled=True",
        "++wandb.offline=True",
        "++wandb.project=loggers-test",
        "++tensorboard.enabled=True",
        "++log_every_n_steps=1",
    ]
    metrics = run_pretrain(tiny_config(inputs, tmp_path / "runs", extra))
    run_dir = Path(metrics["run_dir"])
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    assert [f for f in offline_run.glob("*.wandb") if f.stat().st_size > 0]
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    with open(run_dir / "metrics.csv") as table:
        columns = next(csv.reader(table))
    assert [c for c in columns if c.startswith("lr-")], columns  # the LearningRateMonitor
    assert "val_knn_acc1" in columns or "train_class_loss_step" in columns


@pytest.mark.parametrize(
    ("key", "package", "extra"),
    [("wandb.enabled", "wandb", "wandb"), ("tensorboard.enabled", "tensorboard", "tensorboard")],
)
def test_a_logger_without_its_package_is_refused_before_the_run(
    tmp_path: Path, monkeypatch, key: str, package: str, extra: str
) -> None:
    find_spec = importlib.util.find_spec
    missing = {"wandb", "tensorboard", "tensorboardX"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name in missing else find_spec(name)
    )
    cfg = tiny_config(write_inputs(tmp_path), tmp_path / "runs", [f"++{key}=True"])
    with pytest.raises(
        ConfigError, match=rf"{key}=True needs the {package} package: .*\[{extra}\]"
    ):
        run_pretrain(cfg)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("key", "hint"),
    [("auto_resume.enabled", "resume_from_checkpoint="), ("auto_umap.enabled", "UMAP")],
)
def test_switches_not_implemented_are_refused_not_ignored(tmp_path: Path, key, hint) -> None:
    cfg = tiny_config(write_inputs(tmp_path), tmp_path / "runs", [f"++{key}=True"])
    with pytest.raises(ConfigError, match=rf"{key}=True is not supported here: .*{hint}"):
        run_pretrain(cfg)
    assert not (tmp_path / "runs").exists()


def test_every_experiment_root_has_the_logger_keys_to_override() -> None:
    """``wandb.enabled=True`` (no ``+``) works on each dataset's root config, as in solo-learn."""
    roots = sorted((REPO_ROOT / "scripts" / "pretrain").glob("*/sqsp_*.yaml"))
    assert len(roots) >= 7
    for root in roots:
        with initialize_config_dir(config_dir=str(root.parent), version_base="1.2"):
            cfg = compose(root.stem, overrides=["wandb.enabled=True", "tensorboard.enabled=True"])
        assert cfg.wandb.enabled and cfg.tensorboard.enabled and not cfg.wandb.offline
