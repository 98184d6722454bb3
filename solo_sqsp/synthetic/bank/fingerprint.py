"""What identifies a teacher for its bank: the generator's weights and everything that shapes the
stored samples (feature modules and widths, resolution, latent and class dims, call options).

A bank stores the description and its SHA-256 fingerprint; opening the bank with another teacher
is refused, naming the fields that differ (or the weights, when only they do).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch

from solo_sqsp.teachers import GeneratorTeacher
from solo_sqsp.untrusted.bounded_text import shown


def teacher_description(teacher: GeneratorTeacher) -> dict[str, Any]:
    """The teacher's settings that decide what its samples look like (JSON-serialisable)."""
    call_options = teacher.call_options
    return {
        "generator": type(teacher.generator).__name__,
        "feature_names": list(teacher.feature_names),
        "feature_dims": [int(d) for d in teacher.feature_dims],
        "resolution": int(teacher.resolution),
        "img_channels": int(teacher.img_channels),
        "z_dim": int(teacher.z_dim),
        "c_dim": int(teacher.c_dim),
        "class_sampling": teacher.class_sampling,
        "call_options": {key: call_options[key] for key in sorted(call_options)},
    }


def weights_digest(teacher: GeneratorTeacher) -> str:
    """SHA-256 over the generator's ``state_dict`` (names, dtypes, shapes, bytes), on any device."""
    digest = hashlib.sha256()
    for name, tensor in sorted(teacher.generator.state_dict().items()):
        flat = tensor.detach().reshape(-1).contiguous().cpu()
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def teacher_record(teacher: GeneratorTeacher) -> dict[str, Any]:
    """``description``, ``weights`` digest and their joint SHA-256 ``fingerprint``."""
    record = {"description": teacher_description(teacher), "weights": weights_digest(teacher)}
    fingerprint = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    return {**record, "fingerprint": fingerprint}


def record_mismatch(stored: dict[str, Any], current: dict[str, Any]) -> str | None:
    """None if the records agree, else which description fields (or the weights) differ."""
    if stored.get("fingerprint") == current["fingerprint"]:
        return None
    old, new = stored.get("description"), current["description"]
    if not isinstance(old, dict):
        old = {}
    fields = [
        f"{key}: bank {shown(old.get(key))} vs teacher {new[key]!r}"
        for key in new
        if old.get(key) != new[key]
    ]
    return "; ".join(fields) or "the generator's weights differ"
