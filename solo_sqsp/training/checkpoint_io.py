"""Atomic checkpoint writes: a crash, a full disk or an unwritable folder never leaves a
half-written checkpoint in place of a good one.

Lightning's ``TorchCheckpointIO`` writes straight to the target path, so an error during the
write truncates the previous ``last.ckpt``. ``AtomicCheckpointIO`` writes to a temporary file in
the same folder, flushes and fsyncs it, then ``os.replace``s it onto the target (a rename within
one file system is atomic on POSIX and Windows): the target holds either the old or the new
checkpoint, whole. A failed write raises ``CheckpointWriteError`` naming the path, the cause,
the checkpoints still intact and what to do.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import Tensor

from solo_sqsp.config import ConfigError
from solo_sqsp.untrusted.bounded_text import clipped, shown
from solo_sqsp.untrusted.pickle_scan import scan_torch_file

CHECKPOINT_SUFFIX = ".ckpt"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written; the checkpoints written before are intact."""


def temporary_path(target: Path) -> Path:
    """The hidden file a checkpoint is first written to: same folder, name unique per process."""
    return target.with_name(f".{target.name}.{os.getpid()}.tmp")


def write_atomically(payload: Any, target: str | os.PathLike[str]) -> None:
    """``torch.save(payload)`` to ``target`` through a temporary file, fsync and ``os.replace``;
    the folder is created when missing. The payload is serialised in memory first, so an object
    that cannot be saved raises before any file is touched. A failed write (OSError: disk full,
    file too large, no permission) removes the temporary file, leaves the old ``target`` (if any)
    untouched and raises ``CheckpointWriteError`` saying why and what to do."""
    target = Path(target)
    temporary = temporary_path(target)
    buffer = io.BytesIO()  # serialise first: torch's zip writer turns OS errors into RuntimeError
    torch.save(payload, buffer)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as stream:
            stream.write(buffer.getbuffer())
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
        _fsync_folder(target.parent)
    except OSError as err:
        raise CheckpointWriteError(_write_failure_message(target, err)) from err
    finally:
        with contextlib.suppress(OSError):  # never hide the error above behind this one
            temporary.unlink(missing_ok=True)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO (``Trainer(plugins=[AtomicCheckpointIO()])``) whose saves are
    atomic (``write_atomically``); loading and removal are Lightning's."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        write_atomically(checkpoint, path)


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); folders cannot be opened for fsync on Windows."""
    if os.name != "posix":
        return
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _write_failure_message(target: Path, err: OSError) -> str:
    cause = err.strerror or str(err)
    if err.errno is not None and err.errno in errno.errorcode:
        cause = f"{cause} [{errno.errorcode[err.errno]}]"
    if err.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        fix = "free disk space (or raise the file size limit / quota)"
    elif err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = f"make {target.parent} writable"
    else:
        fix = f"check that {target.parent} is a writable folder with free space"
    folder = target.parent
    intact = (
        sorted(
            path.name
            for path in folder.glob(f"*{CHECKPOINT_SUFFIX}")
            if not path.name.startswith(".")
        )
        if folder.is_dir()
        else []
    )
    kept = (
        f"the checkpoints already in {folder} are intact ({', '.join(intact)})"
        if intact
        else f"no earlier checkpoint exists in {folder}"
    )
    resume_from = "last.ckpt" if "last.ckpt" in intact else (intact[-1] if intact else None)
    resume = (
        f", then resume with resume_from_checkpoint={folder / resume_from}" if resume_from else ""
    )
    return (
        f"could not write checkpoint {target}: {cause}; {kept}. Fix: {fix} or set "
        f"checkpoint.dir to another folder{resume}"
    )


def resume_step(path: str | os.PathLike[str] | None) -> int | None:
    """The global step of the checkpoint a run resumes from (None: no resume); raise
    ``ConfigError`` unless ``path`` is a readable Lightning training checkpoint. Its tensors are
    memory-mapped, not read."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise ConfigError(
            f"resume_from_checkpoint={path} is not a file; pass a .ckpt of an earlier run "
            "(<checkpoint.dir>/<method>/<name>-<id>/last.ckpt) or leave it unset"
        )
    try:
        scan_torch_file(path)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # a truncated zip, a pickle, a file of another kind, a bomb
        raise ConfigError(
            f"resume_from_checkpoint={path} is not a readable Lightning checkpoint "
            f"({load_failure_reason(error)}); pass a .ckpt written by an earlier run of this "
            "library"
        ) from error
    if not isinstance(checkpoint, dict) or "global_step" not in checkpoint:
        raise ConfigError(
            f"resume_from_checkpoint={path} has no global_step: not a Lightning training "
            "checkpoint (weights alone cannot resume a run)"
        )
    step = checkpoint["global_step"]
    if isinstance(step, Tensor) and step.numel() == 1 and not step.is_floating_point():
        step = step.item()
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ConfigError(
            f"resume_from_checkpoint={path} has global_step {shown(step)}, not a count of steps"
        )
    return step


def load_failure_reason(error: Exception) -> str:
    """One line saying why ``torch.load`` failed: the line naming what the weights-only
    unpickler refused, else the error's last line (torch's messages end with the cause)."""
    lines = str(error).strip().splitlines()
    if "Weights only load failed" in str(error):
        refused = next((line.strip() for line in lines if "Unsupported" in line), None)
        if refused is not None:
            return clipped(refused)
    return clipped(lines[-1]) if lines else type(error).__name__
