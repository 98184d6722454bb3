"""Atomic checkpoint writes (``solo_sqsp.training.checkpoint_io``): the target holds the old or the
new checkpoint, whole; failures name the path, the cause, the intact checkpoints and the fix.
(Full disk and unwritable folders during a real run: ``test_resume.py``.)"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from solo_sqsp.training.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    write_atomically,
)


def test_write_replaces_the_checkpoint_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "new" / "last.ckpt"  # the folder is made on first write
    write_atomically({"step": 1, "w": torch.zeros(3)}, target)
    AtomicCheckpointIO().save_checkpoint({"step": 2, "w": torch.ones(3)}, target)
    saved = torch.load(target, weights_only=True)
    assert saved["step"] == 2 and torch.equal(saved["w"], torch.ones(3))
    assert sorted(os.listdir(target.parent)) == ["last.ckpt"]


def test_a_payload_that_cannot_be_saved_touches_no_file(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    write_atomically({"step": 1}, target)
    before = target.read_bytes()
    with pytest.raises(Exception, match="lambda"):
        write_atomically({"step": 2, "hook": lambda: None}, target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_a_folder_that_is_a_file_gives_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(CheckpointWriteError) as caught:
        write_atomically({"step": 1}, tmp_path / "runs" / "last.ckpt")
    message = str(caught.value)
    assert f"could not write checkpoint {tmp_path / 'runs' / 'last.ckpt'}" in message
    assert "[EEXIST]" in message or "[ENOTDIR]" in message
    assert "no earlier checkpoint exists" in message and "checkpoint.dir" in message
