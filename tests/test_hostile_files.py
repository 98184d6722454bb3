"""Hostile teacher and checkpoint files (issue 15): each crafted file is refused with the project's
own error, within 64 MiB of extra memory and without hanging (each record keeps its time: well
under a second on an idle core), the interpreter survives, and a valid network pickle loaded
afterwards in the same process still loads (nothing was poisoned).

All cases run in one child process (this file run as a script), one after another, so that a
crash (a segfault in hashing a million nested tuples) is seen as such and named; each test below
checks the record of its case.
"""

from __future__ import annotations

import io
import json
import pickle
import resource
import struct
import subprocess
import sys
import time
import types
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

# A hang bound, not a speed target (no timing thresholds in unit tests: a loaded machine is
# several times slower); the cases take well under a second each on an idle core.
MAX_SECONDS = 20.0
MAX_EXTRA_MIB = 64
MAX_MESSAGE_CHARS = 2000
CHILD_TIMEOUT_S = 600
PROTO4 = pickle.PROTO + bytes([4])


def _unicode(text: str) -> bytes:
    raw = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw


def nested_tuples(levels: int) -> bytes:
    """Opcodes pushing a tuple nested ``levels`` deep (one byte per level)."""
    return pickle.EMPTY_TUPLE + pickle.TUPLE1 * levels


def doubling_tuples(levels: int) -> bytes:
    """Opcodes pushing a tuple whose two items are the same memoized tuple, ``levels`` times over:
    ``2**levels`` leaves from a few bytes per level."""
    body = pickle.NONE + pickle.MEMOIZE
    for level in range(levels):
        body += pickle.POP + pickle.BINGET + bytes([level]) + pickle.DUP + pickle.TUPLE2
        body += pickle.MEMOIZE
    return body


def dict_pickle(key: bytes, value: bytes = pickle.NONE) -> bytes:
    """A protocol-4 pickle of a one-entry dict whose key and value the given opcodes push."""
    return PROTO4 + pickle.EMPTY_DICT + key + value + pickle.SETITEM + pickle.STOP


def torch_zip_with_pickle(data_pkl: bytes) -> bytes:
    """A ``torch.save`` zip whose ``data.pkl`` is replaced by ``data_pkl``."""
    import torch

    saved = io.BytesIO()
    torch.save({}, saved)
    out = io.BytesIO()
    with zipfile.ZipFile(saved) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            is_pickle = info.filename.endswith("/data.pkl")
            target.writestr(info, data_pkl if is_pickle else source.read(info))
    return out.getvalue()


def strided_generator(channels: int) -> Any:
    """A generator of ``channels`` widths whose every tensor is a zero-stride view of one element:
    a file of a few KB that declares a network of many MB."""
    import torch
    from small_generator import small_generator

    generator = small_generator(16, channel_base=channels * 16, channel_max=channels)
    for module in generator.modules():
        for table in (module._parameters, module._buffers):
            for name, tensor in table.items():
                if tensor is not None:
                    view = torch.zeros(()).expand(tensor.shape)
                    table[name] = (
                        torch.nn.Parameter(view, False) if name in module._parameters else view
                    )
    return generator


def strided_network_pickle() -> bytes:
    import nvidia_pickle_factory

    saved_copy = nvidia_pickle_factory.copy  # deepcopy would make the views contiguous
    nvidia_pickle_factory.copy = types.SimpleNamespace(deepcopy=lambda module: module)
    try:
        return nvidia_pickle_factory.nvidia_network_pickle(strided_generator(512))
    finally:
        nvidia_pickle_factory.copy = saved_copy


def strided_checkpoint() -> bytes:
    import torch

    from solo_sqsp.teachers.network_pickle import CHECKPOINT_FORMAT, CHECKPOINT_VERSION

    generator = strided_generator(512)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "class_name": "Generator",
        "init_kwargs": generator.init_kwargs,
        "state_dict": dict(generator.state_dict()),
        "extra": {},
    }
    saved = io.BytesIO()
    torch.save(payload, saved)
    return saved.getvalue()


def long_name_pickle() -> bytes:
    import torch
    from nvidia_pickle_factory import nvidia_network_pickle
    from small_generator import small_generator

    generator = small_generator(16, channel_base=32, channel_max=8)
    generator.synthesis.add_module("x" * 5000, type("G" * 5000, (torch.nn.Module,), {})())
    return nvidia_network_pickle(generator)


def kwargs_pickle(**synthesis_kwargs: Any) -> bytes:
    """A valid network pickle whose recorded synthesis kwargs are updated after the fact."""
    from nvidia_pickle_factory import nvidia_network_pickle
    from small_generator import small_generator

    generator = small_generator(16, channel_base=32, channel_max=8)
    generator.init_kwargs["synthesis_kwargs"].update(synthesis_kwargs)
    return nvidia_network_pickle(generator)


def build_on_stand_in() -> bytes:
    """BUILD on the tensor rebuild stand-in: would set its ``__defaults__`` for every later load."""
    state = pickle.EMPTY_DICT + _unicode("__defaults__") + pickle.NONE + pickle.SETITEM
    function = pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n"
    return dict_pickle(_unicode("G_ema"), function + state + pickle.BUILD)


# case name: (file suffix, bytes maker, loader name, expected error class path)
CASES: dict[str, tuple[str, Callable[[], bytes], str, str]] = {
    "deep_nesting": (".pkl", lambda: dict_pickle(nested_tuples(3000)), "network", "teacher"),
    "million_nested_tuples": (
        ".pkl",
        lambda: dict_pickle(nested_tuples(1_000_000)),
        "network",
        "teacher",
    ),
    "memo_fanout": (".pkl", lambda: dict_pickle(doubling_tuples(100)), "network", "teacher"),
    "message_of_shared_subtrees": (
        ".pkl",
        lambda: dict_pickle(doubling_tuples(18)),
        "network",
        "teacher",
    ),
    "huge_memo_index": (
        ".pkl",
        lambda: PROTO4 + pickle.NONE + pickle.LONG_BINPUT + b"\xff\xff\xff\x7f" + pickle.STOP,
        "network",
        "teacher",
    ),
    "build_on_stand_in": (".pkl", build_on_stand_in, "network", "teacher"),
    "strided_tensors_in_network_pickle": (".pkl", strided_network_pickle, "network", "teacher"),
    "strided_tensors_in_checkpoint": (".pt", strided_checkpoint, "checkpoint", "teacher"),
    "long_record_names": (".pkl", long_name_pickle, "network", "teacher"),
    "constructor_billion_bit_number": (
        ".pkl",
        lambda: kwargs_pickle(num_fp16_res=-(10**9)),
        "network",
        "teacher",
    ),
    "constructor_bool_as_width": (
        ".pkl",
        lambda: kwargs_pickle(channel_max=True),
        "network",
        "teacher",
    ),
    "constructor_long_filter": (
        ".pkl",
        lambda: kwargs_pickle(resample_filter=[1] * 100_000),
        "network",
        "teacher",
    ),
    "nested_teacher_checkpoint": (
        ".pt",
        lambda: torch_zip_with_pickle(PROTO4 + nested_tuples(1_000_000) + pickle.STOP),
        "checkpoint",
        "teacher",
    ),
    "nested_evaluation_checkpoint": (
        ".ckpt",
        lambda: torch_zip_with_pickle(dict_pickle(nested_tuples(1_000_000))),
        "evaluation",
        "evaluation",
    ),
    "fanout_resume_checkpoint": (
        ".ckpt",
        lambda: torch_zip_with_pickle(dict_pickle(doubling_tuples(100))),
        "resume",
        "resume",
    ),
}


def _loaders() -> dict[str, Callable[[Path], object]]:
    from solo_sqsp.evaluation.checkpoint import read_state_dict
    from solo_sqsp.teachers.network_pickle import load_network_pkl, load_teacher_checkpoint
    from solo_sqsp.training.checkpoint_io import resume_step

    def network(path: Path) -> object:
        with open(path, "rb") as stream:
            return load_network_pkl(stream)

    return {
        "network": network,
        "checkpoint": load_teacher_checkpoint,
        "evaluation": read_state_dict,
        "resume": resume_step,
    }


def _errors() -> dict[str, type[Exception]]:
    from solo_sqsp.config import ConfigError
    from solo_sqsp.evaluation.checkpoint import CheckpointError
    from solo_sqsp.teachers.errors import TeacherFileError

    return {"teacher": TeacherFileError, "evaluation": CheckpointError, "resume": ConfigError}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_cases(folder: Path, names: list[str]) -> None:
    """Run the named cases, printing one JSON line per case (and a line before it, so that a
    crash names its case)."""
    from nvidia_pickle_factory import nvidia_network_pickle
    from small_generator import small_generator

    valid = folder / "valid.pkl"
    valid.write_bytes(nvidia_network_pickle(small_generator(16, channel_base=32, channel_max=8)))
    loaders, errors = _loaders(), _errors()
    loaders["network"](valid)  # warm up: imports and first allocations are not the case's
    for name in names:
        suffix, make, loader, error = CASES[name]
        print(json.dumps({"starting": name}), flush=True)
        path = folder / f"{name}{suffix}"
        path.write_bytes(make())
        before, start = _peak_mib(), time.monotonic()
        try:
            loaders[loader](path)
            outcome, message = "loaded", ""
        except errors[error] as err:
            outcome, message = "refused", str(err)
        except Exception as err:  # the finding: any other error type
            outcome, message = f"raised {type(err).__name__}", str(err)[:500]
        seconds, extra = time.monotonic() - start, _peak_mib() - before
        try:
            loaders["network"](valid)
            valid_after = True
        except Exception:
            valid_after = False
        record = {
            "case": name,
            "bytes": path.stat().st_size,
            "outcome": outcome,
            "seconds": seconds,
            "extra_mib": extra,
            "message_chars": len(message),
            "message": message[:300],
            "valid_after": valid_after,
        }
        print(json.dumps(record), flush=True)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    folder = tmp_path_factory.mktemp("hostile")
    done = subprocess.run(
        [sys.executable, __file__, str(folder), *CASES],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    found = {line["case"]: line for line in lines if "case" in line}
    if done.returncode != 0:
        started = [line["starting"] for line in lines if "starting" in line]
        crashed = started[-1] if started else "before any case"
        found[crashed] = {"case": crashed, "outcome": f"child died ({done.returncode})"}
        found["_stderr"] = {"text": done.stderr[-3000:]}
    return found


@pytest.mark.parametrize("case", list(CASES))
def test_hostile_file_is_refused_quickly_in_bounded_memory(
    records: dict[str, dict[str, Any]], case: str
) -> None:
    record = records.get(case)
    assert record is not None, f"{case} did not run: {records.get('_stderr')}"
    assert record["outcome"] == "refused", record
    assert record["seconds"] <= MAX_SECONDS, record
    assert record["extra_mib"] <= MAX_EXTRA_MIB, record
    assert record["message_chars"] <= MAX_MESSAGE_CHARS, record
    assert record["valid_after"], f"a valid pickle no longer loads after {case}"


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    run_cases(Path(sys.argv[1]), sys.argv[2:])
