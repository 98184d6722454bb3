"""Fuzzing the restricted unpickler (``load_network_pkl``): byte flips and truncations of a valid
NVIDIA-structured network pickle, and random pickle opcode streams that name dangerous globals.

Every case must end in a clear ``TeacherFileError`` (``UnsafePickleError`` included) or a valid
load: never another exception type, an interpreter crash, a hang or code execution, and each
within ``SLOW_CASE_S`` seconds and ``MAX_EXTRA_MIB`` of extra peak memory. The cases run in a
child process (this file run as a script), so a segfault or a hang is seen as such; each case is
seeded, and a failing one is reported by kind and index for replay.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import resource
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

SEED = 20221128
BYTE_FLIPS = 200
TRUNCATIONS = 50
OPCODE_STREAMS = 100
CALL_TREES = 100
CHILD_TIMEOUT_S = 300
SLOW_CASE_S = 20.0  # a hang bound, not a speed target (no timing thresholds in unit tests)
MAX_EXTRA_MIB = 64

# Strings the random streams push: names of dangerous and of allowed globals, and arguments
# that would create the marker file if any call ran.
NAMES = [
    "os",
    "posix",
    "system",
    "builtins",
    "eval",
    "exec",
    "getattr",
    "subprocess",
    "Popen",
    "torch._utils",
    "_rebuild_tensor_v2",
    "_rebuild_parameter",
    "torch.storage",
    "_load_from_bytes",
    "torch_utils.persistence",
    "_reconstruct_persistent_obj",
    "collections",
    "OrderedDict",
    "numpy",
    "dtype",
    "f4",
    "G_ema",
    "class",
    "type",
    "state",
]


def case_bytes(valid: bytes, kind: str, index: int, marker: str) -> bytes:
    """Case ``index`` of ``kind`` (``flip``, ``truncate``, ``opcodes``), from its own seed."""
    rng = random.Random(f"{SEED}-{kind}-{index}")
    if kind == "flip":
        data = bytearray(valid)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(len(data))] ^= rng.randint(1, 255)
        return bytes(data)
    if kind == "truncate":
        return valid[: rng.randrange(len(valid))]
    if kind == "calls":
        return random_call_tree(rng, marker)
    return random_opcode_stream(rng, marker)


def _short_unicode(text: str) -> bytes:
    raw = text.encode()
    return pickle.SHORT_BINUNICODE + bytes([len(raw)]) + raw


def random_opcode_stream(rng: random.Random, marker: str) -> bytes:
    """A protocol-4 header, 1 to 60 random opcodes with well-formed arguments, then STOP."""
    strings = [*NAMES, f"touch {marker}", f"open({marker!r}, 'w')"]
    makers = [
        lambda: pickle.MARK,
        lambda: pickle.EMPTY_DICT,
        lambda: pickle.EMPTY_LIST,
        lambda: pickle.EMPTY_TUPLE,
        lambda: pickle.NONE,
        lambda: pickle.NEWTRUE,
        lambda: pickle.BININT1 + bytes([rng.randrange(256)]),
        lambda: pickle.BININT + struct.pack("<i", rng.randint(-(2**31), 2**31 - 1)),
        lambda: pickle.LONG1 + bytes([1, rng.randrange(256)]),
        lambda: pickle.BINFLOAT + struct.pack(">d", rng.uniform(-1e9, 1e9)),
        lambda: _short_unicode(rng.choice(strings)),
        lambda: pickle.SHORT_BINBYTES + bytes([4]) + rng.randbytes(4),
        lambda: pickle.GLOBAL + f"{rng.choice(NAMES)}\n{rng.choice(NAMES)}\n".encode(),
        lambda: pickle.STACK_GLOBAL,
        lambda: pickle.REDUCE,
        lambda: pickle.BUILD,
        lambda: pickle.NEWOBJ,
        lambda: pickle.TUPLE,
        lambda: pickle.TUPLE1,
        lambda: pickle.TUPLE2,
        lambda: pickle.TUPLE3,
        lambda: pickle.LIST,
        lambda: pickle.DICT,
        lambda: pickle.SETITEM,
        lambda: pickle.SETITEMS,
        lambda: pickle.APPEND,
        lambda: pickle.APPENDS,
        lambda: pickle.MEMOIZE,
        lambda: pickle.BINGET + bytes([rng.randrange(4)]),
        lambda: pickle.BINPUT + bytes([rng.randrange(4)]),
        lambda: pickle.DUP,
        lambda: pickle.POP,
        lambda: pickle.POP_MARK,
        lambda: pickle.BINPERSID,
    ]
    body = b"".join(rng.choice(makers)() for _ in range(rng.randint(1, 60)))
    return pickle.PROTO + bytes([4]) + body + pickle.STOP


GLOBALS = [
    ("torch_utils.persistence", "_reconstruct_persistent_obj"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch.storage", "_load_from_bytes"),
    ("collections", "OrderedDict"),
    ("dnnlib.util", "EasyDict"),
    ("builtins", "set"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "scalar"),
    ("os", "system"),
    ("builtins", "eval"),
    ("subprocess", "Popen"),
]


def random_call_tree(rng: random.Random, marker: str) -> bytes:
    """A well-formed pickle of ``{'G_ema': value, ...}`` whose values nest random data and calls
    of the network pickles' globals (and dangerous ones) on random arguments (REDUCE, BUILD)."""
    strings = [*NAMES, f"touch {marker}", "Generator", "_parameters", "_modules", "_init_kwargs"]

    def value(depth: int) -> bytes:
        kinds = ["int", "str", "bytes", "none", "float"]
        if depth < 4:
            kinds += ["tuple", "dict", "call", "call", "build"]
        kind = rng.choice(kinds)
        if kind == "int":
            return pickle.BININT + struct.pack("<i", rng.choice([0, 1, 2, 6, -1, 2**31 - 1]))
        if kind == "str":
            return _short_unicode(rng.choice(strings))
        if kind == "bytes":
            return pickle.SHORT_BINBYTES + bytes([8]) + rng.randbytes(8)
        if kind == "none":
            return pickle.NONE
        if kind == "float":
            return pickle.BINFLOAT + struct.pack(">d", rng.choice([0.5, float("nan"), 1e308]))
        if kind == "tuple":
            items = b"".join(value(depth + 1) for _ in range(rng.randint(0, 6)))
            return pickle.MARK + items + pickle.TUPLE
        if kind == "dict":
            items = b"".join(
                _short_unicode(rng.choice(strings)) + value(depth + 1)
                for _ in range(rng.randint(0, 5))
            )
            return pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS
        module, name = rng.choice(GLOBALS)
        call = (
            _short_unicode(module)
            + _short_unicode(name)
            + pickle.STACK_GLOBAL
            + pickle.MARK
            + b"".join(value(depth + 1) for _ in range(rng.randint(0, 7)))
            + pickle.TUPLE
            + pickle.REDUCE
        )
        return call + value(depth + 1) + pickle.BUILD if kind == "build" else call

    entries = b"".join(
        _short_unicode(key) + value(0) for key in rng.sample(["G_ema", "G", "D"], rng.randint(1, 3))
    )
    return (
        pickle.PROTO
        + bytes([4])
        + pickle.EMPTY_DICT
        + pickle.MARK
        + entries
        + (pickle.SETITEMS + pickle.STOP)
    )


def run_cases(valid_path: Path, marker: str) -> dict[str, object]:
    """Load every case; count outcomes, list the bad ones (``kind[index]: what happened``)."""
    from solo_sqsp.teachers.errors import TeacherFileError
    from solo_sqsp.teachers.network_pickle import load_network_pkl
    from solo_sqsp.teachers.stylegan2 import Generator

    valid = valid_path.read_bytes()
    counts = {"loaded": 0, "refused": 0}
    bad: list[str] = []
    slowest = (0.0, "")
    largest = (0.0, "")
    plan = [("valid", 0)]
    plan += [("flip", i) for i in range(BYTE_FLIPS)]
    plan += [("truncate", i) for i in range(TRUNCATIONS)]
    plan += [("opcodes", i) for i in range(OPCODE_STREAMS)]
    plan += [("calls", i) for i in range(CALL_TREES)]
    for kind, index in plan:
        data = valid if kind == "valid" else case_bytes(valid, kind, index, marker)
        peak, start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.monotonic()
        try:
            networks = load_network_pkl(io.BytesIO(data))
            if not isinstance(networks["G_ema"], Generator):
                bad.append(f"{kind}[{index}]: loaded without a Generator G_ema")
            counts["loaded"] += 1
        except TeacherFileError as err:
            if not str(err).strip():
                bad.append(f"{kind}[{index}]: {type(err).__name__} with an empty message")
            counts["refused"] += 1
        except Exception as err:  # the finding: any other exception type
            bad.append(f"{kind}[{index}]: {type(err).__name__}: {err}"[:500])
        elapsed = time.monotonic() - start
        extra_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
        if kind != "valid":  # the first load's imports and allocations are not a case's
            slowest = max(slowest, (elapsed, f"{kind}[{index}]"))
            largest = max(largest, (extra_mib, f"{kind}[{index}]"))
    return {
        "counts": counts,
        "bad": bad,
        "slowest": slowest,
        "largest": largest,
        "cases": len(plan),
    }


@pytest.fixture(scope="module")
def valid_pickle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nvidia_pickle_factory import nvidia_network_pickle
    from small_generator import small_generator

    path = tmp_path_factory.mktemp("fuzz") / "network.pkl"
    path.write_bytes(nvidia_network_pickle(small_generator(16, channel_base=32, channel_max=8)))
    return path


def test_fuzzed_network_pickles_end_in_a_clear_error_or_a_valid_load(valid_pickle, tmp_path):
    marker = tmp_path / "code-ran"
    done = subprocess.run(
        [sys.executable, __file__, str(valid_pickle), str(marker)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,  # a hang fails here with TimeoutExpired
    )
    assert done.returncode == 0, f"fuzz child died ({done.returncode}): {done.stderr[-3000:]}"
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["bad"] == [], "\n".join(report["bad"])
    assert not marker.exists(), "a fuzz case ran code"
    assert report["cases"] == 1 + BYTE_FLIPS + TRUNCATIONS + OPCODE_STREAMS + CALL_TREES
    assert report["counts"]["loaded"] >= 1 and report["counts"]["refused"] >= TRUNCATIONS
    assert report["slowest"][0] < SLOW_CASE_S, f"slow case: {report['slowest']}"
    assert report["largest"][0] <= MAX_EXTRA_MIB, f"memory-hungry case: {report['largest']}"


if __name__ == "__main__":
    print(json.dumps(run_cases(Path(sys.argv[1]), sys.argv[2])))
