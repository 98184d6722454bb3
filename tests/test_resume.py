"""Interruption and disk faults: a run killed after its first epoch resumes to the same epoch and
step as an uninterrupted one; a resumed run starts from exactly the saved state; checkpoints hold
no teacher; a full disk or an unwritable run folder at checkpoint time stops the run with a clear
error and leaves the earlier checkpoints intact."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from tiny_pretrain import (
    main_pretrain_command,
    run_main_pretrain,
    subprocess_env,
    tiny_config,
    write_inputs,
)

from solo_sqsp.training.checkpoint_io import CheckpointWriteError
from solo_sqsp.training.pretrain import run_pretrain

EPOCHS = 3
ONE_STEP_EPOCHS = [f"max_epochs={EPOCHS}", "++limit_train_batches=1"]
FIRST_CHECKPOINT = "sqsp-custom-epoch=0.ckpt"


def run_folder(out: Path, run_id: str) -> Path:
    return out / "sqsp" / f"sqsp-custom-{run_id}"


def resume_override(path: Path) -> str:
    return f"++resume_from_checkpoint='{path}'"  # quoted: checkpoint names hold '='


def load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Inputs and an uninterrupted run of ``EPOCHS`` one-step epochs (its metrics and folder)."""
    root = tmp_path_factory.mktemp("resume")
    inputs = write_inputs(root)
    out = root / "runs"
    metrics = run_pretrain(tiny_config(inputs, out, [*ONE_STEP_EPOCHS, "++run_id=reference"]))
    return {"inputs": inputs, "metrics": metrics, "run_dir": run_folder(out, "reference")}


def test_killed_run_resumes_to_the_same_epoch_and_step(reference, tmp_path) -> None:
    inputs, out = reference["inputs"], tmp_path / "runs"
    extra = [*ONE_STEP_EPOCHS, "++run_id=killed"]
    run_dir = run_folder(out, "killed")
    process = subprocess.Popen(
        main_pretrain_command(inputs, out, extra),
        cwd=tmp_path,
        env=subprocess_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while not (run_dir / FIRST_CHECKPOINT).exists() and process.poll() is None:
        assert time.monotonic() < deadline, "no epoch checkpoint within 240 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL, "the run ended before it was killed"
    assert not (run_dir / "metrics.json").exists()
    for checkpoint in run_dir.glob("*.ckpt"):  # atomic writes: whole files or none
        assert load(checkpoint)["epoch"] == 0

    extra.append(resume_override(run_dir / FIRST_CHECKPOINT))
    done = run_main_pretrain(inputs, out, extra, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    expected = reference["metrics"]
    assert (metrics["epochs"], metrics["steps"]) == (expected["epochs"], expected["steps"])
    assert (metrics["epochs"], metrics["steps"]) == (EPOCHS, EPOCHS)
    last = load(run_dir / "last.ckpt")
    assert last["global_step"] == EPOCHS and last["sqsp_synthetic_state"]["step"] == EPOCHS


def read_metrics_csv(run_dir: Path) -> list[dict[str, str]]:
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_resuming_into_the_run_folder_keeps_the_metrics_logged_before(reference, tmp_path):
    """Lightning's CSV logger deletes metrics.csv in a non-empty folder; resuming keeps the rows
    logged before the checkpoint's step, drops later ones (training the resumed run repeats)
    and appends its own."""
    run_dir = run_folder(tmp_path / "runs", "reference")
    shutil.copytree(reference["run_dir"], run_dir)
    earlier = read_metrics_csv(run_dir)
    assert [int(row["step"]) for row in earlier] == list(range(EPOCHS))
    stale = dict(earlier[-1], step=str(EPOCHS + 5))  # logged after the checkpoint, then killed
    with (run_dir / "metrics.csv").open("a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=list(stale)).writerow(stale)

    overrides = [
        f"max_epochs={EPOCHS + 1}",
        "++limit_train_batches=1",
        "++run_id=reference",
        resume_override(run_dir / "last.ckpt"),
    ]
    run_pretrain(tiny_config(reference["inputs"], tmp_path / "runs", overrides))
    logged = read_metrics_csv(run_dir)
    assert [int(row["step"]) for row in logged] == list(range(EPOCHS + 1))
    assert logged[:EPOCHS] == earlier  # the earlier rows, value for value


def nested_equal(restored: Any, saved: Any, where: str) -> None:
    """Assert ``restored == saved``, tensors compared element by element (``torch.equal``)."""
    if isinstance(saved, torch.Tensor):
        assert isinstance(restored, torch.Tensor), where
        assert restored.dtype == saved.dtype and torch.equal(restored.cpu(), saved), where
    elif isinstance(saved, dict):
        assert set(restored) == set(saved), f"{where}: {set(restored) ^ set(saved)}"
        for key in saved:
            nested_equal(restored[key], saved[key], f"{where}[{key!r}]")
    elif isinstance(saved, (list, tuple)):
        assert len(restored) == len(saved), where
        for index, (a, b) in enumerate(zip(restored, saved, strict=True)):
            nested_equal(a, b, f"{where}[{index}]")
    else:
        assert restored == saved, f"{where}: {restored!r} != {saved!r}"


class CaptureRestoredState(pl.Callback):
    """At ``on_train_start`` (after Lightning restored the checkpoint, before any step): copy
    what the run restored, then stop it."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.state = {
            "state_dict": {k: v.detach().clone() for k, v in pl_module.state_dict().items()},
            "optimizer": trainer.optimizers[0].state_dict(),
            "scheduler": trainer.lr_scheduler_configs[0].scheduler.state_dict(),
            "epoch": trainer.current_epoch,
            "global_step": trainer.global_step,
            "synthetic": pl_module.synthetic.state_dict(),
        }
        self.teacher = list(pl_module.teacher.generator.state_dict().values())
        trainer.should_stop = True


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item)


def test_resumed_state_equals_the_saved_one_and_holds_no_teacher(reference, tmp_path) -> None:
    path = reference["run_dir"] / "last.ckpt"
    saved = load(path)
    capture = CaptureRestoredState()
    extra = [f"max_epochs={EPOCHS + 1}", "++limit_train_batches=1", resume_override(path)]
    run_pretrain(tiny_config(reference["inputs"], tmp_path / "runs", extra), [capture])
    restored = capture.state

    nested_equal(restored["state_dict"], saved["state_dict"], "state_dict")
    assert any(key.startswith("squeeze.") for key in saved["state_dict"])
    nested_equal(restored["optimizer"], saved["optimizer_states"][0], "optimizer")
    assert saved["optimizer_states"][0]["state"], "SGD momentum buffers are saved"
    nested_equal(restored["scheduler"], saved["lr_schedulers"][0], "scheduler")
    assert restored["global_step"] == saved["global_step"] == EPOCHS
    assert restored["epoch"] == saved["epoch"] + 1 == EPOCHS  # saved at the end of its epoch
    assert restored["synthetic"] == saved["sqsp_synthetic_state"]
    assert saved["sqsp_synthetic_state"]["step"] == EPOCHS

    stored = [t for t in tensors_in(saved) if t.is_floating_point()]
    for tensor in capture.teacher:  # no teacher tensor anywhere in the checkpoint
        assert not any(t.shape == tensor.shape and torch.equal(t, tensor) for t in stored)
    names = " ".join(saved["state_dict"])
    assert "teacher" not in names and "synthesis" not in names and "mapping" not in names


def copy_run(reference: dict[str, Any], out: Path, run_id: str) -> tuple[Path, dict[str, str]]:
    """The reference run's folder as run ``run_id`` under ``out`` (hard links: a checkpoint
    written in place would change both, and the digests, taken before, show it)."""
    run_dir = run_folder(out, run_id)
    shutil.copytree(reference["run_dir"], run_dir, copy_function=os.link)
    return run_dir, {path.name: digest(path) for path in run_dir.glob("*.ckpt")}


def one_more_epoch(run_dir: Path, run_id: str) -> list[str]:
    """Overrides resuming ``run_dir/last.ckpt`` into the same folder for one more epoch."""
    return [
        f"max_epochs={EPOCHS + 1}",
        "++limit_train_batches=1",
        f"++run_id={run_id}",
        resume_override(run_dir / "last.ckpt"),
    ]


def test_full_disk_at_checkpoint_time_keeps_the_earlier_checkpoints(reference, tmp_path) -> None:
    """A real write failure: the run's file size limit (RLIMIT_FSIZE, SIGXFSZ ignored so the
    write gets EFBIG) is below a checkpoint's size and above the logs'."""
    out = tmp_path / "runs"
    run_dir, before = copy_run(reference, out, "full")
    limit = (reference["run_dir"] / "last.ckpt").stat().st_size // 2

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = run_main_pretrain(
        reference["inputs"],
        out,
        one_more_epoch(run_dir, "full"),
        cwd=tmp_path,
        preexec_fn=small_disk,
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if "CheckpointWriteError" in line]
    assert errors, done.stderr[-3000:]
    message = errors[-1]
    assert f"could not write checkpoint {run_dir}" in message
    assert "File too large [EFBIG]" in message and "free disk space" in message
    assert "are intact (last.ckpt, sqsp-custom-epoch=2.ckpt)" in message
    assert f"resume_from_checkpoint={run_dir / 'last.ckpt'}" in message
    assert {path.name: digest(path) for path in run_dir.glob("*.ckpt")} == before
    assert not list(run_dir.glob(".*.tmp"))


def lock_folder(folder: Path) -> Callable[[], None]:
    """Make ``folder`` refuse new files (read-only permissions, or for root, whom permissions do
    not stop, the immutable attribute); return the undo. Skips when neither can be set."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return lambda: folder.chmod(0o755)
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a folder unwritable")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"running as root and chattr +i fails here: {made.stderr.strip()}")
    return lambda: subprocess.run(["chattr", "-i", str(folder)], check=True)


class LockRunFolder(pl.Callback):
    """Locks the run folder once training has started (the logger has set it up), so that the
    next thing to create a file there is the epoch's checkpoint."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.unlock: Callable[[], None] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.unlock = lock_folder(self.folder)


def test_unwritable_run_folder_at_checkpoint_time_keeps_the_earlier_checkpoints(
    reference, tmp_path
) -> None:
    out = tmp_path / "runs"
    run_dir, before = copy_run(reference, out, "locked")
    cfg = tiny_config(reference["inputs"], out, one_more_epoch(run_dir, "locked"))
    lock = LockRunFolder(run_dir)
    try:
        with pytest.raises(CheckpointWriteError) as caught:
            run_pretrain(cfg, [lock])
    finally:
        if lock.unlock is not None:
            lock.unlock()
    message = str(caught.value)
    assert f"could not write checkpoint {run_dir}" in message
    assert "[EPERM]" in message or "[EACCES]" in message
    assert f"make {run_dir} writable" in message
    assert {path.name: digest(path) for path in run_dir.glob("*.ckpt")} == before
