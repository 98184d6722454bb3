"""The pickle pre-scan (``solo_sqsp.untrusted.pickle_scan``), bounded message formatting and the
schema of recorded generator arguments, in process (the crafted files end to end:
test_hostile_files.py)."""

from __future__ import annotations

import io
import pickle
import time
from collections import OrderedDict

import numpy as np
import pytest
import torch
from nvidia_pickle_factory import nvidia_network_pickle
from small_generator import small_generator

from solo_sqsp.teachers.errors import TeacherFileError
from solo_sqsp.teachers.generator_kwargs import check_generator_kwargs
from solo_sqsp.teachers.tensor_budget import check_stored_tensors, is_dense
from solo_sqsp.untrusted.bounded_text import MAX_SHOWN, shown
from solo_sqsp.untrusted.pickle_scan import PickleScanError, scan_pickle, scan_torch_file

PROTO4 = pickle.PROTO + bytes([4])


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_plain_pickles_of_every_protocol_pass(protocol: int):
    shared = [1, 2.5, "x", b"y", None, True]
    value = {"a": (shared, shared), "b": OrderedDict(c={3, 4}), "d": frozenset({5}), 6: [[]]}
    data = pickle.dumps(value, protocol=protocol)
    assert scan_pickle(data) == len(data)


@pytest.mark.parametrize("protocol", [3, 4])
def test_network_pickles_pass_with_build_only_on_numpy_dtypes(protocol: int):
    data = nvidia_network_pickle(
        small_generator(16, channel_base=32, channel_max=8), protocol=protocol
    )
    assert scan_pickle(data, build_globals={("numpy", "dtype")}) == len(data)


def test_build_elsewhere_is_refused_when_restricted():
    data = pickle.dumps(np.float64(1.5).dtype, protocol=4)  # numpy.dtype + BUILD
    scan_pickle(data, build_globals={("numpy", "dtype")})
    with pytest.raises(PickleScanError, match=r"BUILD"):
        scan_pickle(data, build_globals={("collections", "OrderedDict")})


def test_depth_fanout_items_memo_and_cycles_are_refused():
    nested = PROTO4 + pickle.EMPTY_TUPLE + pickle.TUPLE1 * 200 + pickle.STOP
    with pytest.raises(PickleScanError, match="deeper than 100"):
        scan_pickle(nested)
    assert scan_pickle(nested, max_depth=300) == len(nested)
    doubling = pickle.NONE
    for _ in range(40):
        doubling += pickle.DUP + pickle.TUPLE2
    start = time.monotonic()
    with pytest.raises(PickleScanError, match="shared parts expanded"):
        scan_pickle(PROTO4 + doubling + pickle.STOP)
    assert time.monotonic() - start < 1
    with pytest.raises(PickleScanError, match="more than 10 items"):
        scan_pickle(pickle.dumps(list(range(20)), protocol=4), max_items=10)
    with pytest.raises(PickleScanError, match="memo entry"):
        scan_pickle(PROTO4 + pickle.NONE + pickle.LONG_BINPUT + b"\x00\x00\x00\x01" + pickle.STOP)
    cyclic = []
    cyclic.append(cyclic)
    with pytest.raises(PickleScanError, match="contains itself"):
        scan_pickle(pickle.dumps(cyclic, protocol=4))


def test_growth_after_embedding_is_counted():
    """A list grown after it was put into its parent: the final graph check sees the growth."""
    body = pickle.EMPTY_LIST + pickle.MEMOIZE + pickle.POP  # memo[0] = L
    body += pickle.MARK + pickle.BINGET + b"\x00" + pickle.BINGET + b"\x00" + pickle.LIST  # [L, L]
    body += pickle.MEMOIZE + pickle.POP  # memo[1] = [L, L]
    body += pickle.BINGET + b"\x00" + pickle.MARK + pickle.NONE * 200 + pickle.APPENDS  # L grows
    body += pickle.POP + pickle.BINGET + b"\x01"
    data = PROTO4 + body + pickle.STOP
    assert scan_pickle(data, max_nodes=500) == len(data)
    with pytest.raises(PickleScanError, match="shared parts expanded"):
        scan_pickle(data, max_nodes=300)


def test_truncated_and_garbage_streams_are_refused():
    data = pickle.dumps({"a": [1, 2, 3]}, protocol=4)
    for cut in range(len(data)):
        with pytest.raises(PickleScanError):
            scan_pickle(data[:cut])
    with pytest.raises(PickleScanError, match="truncated or corrupt"):
        scan_pickle(b"\x80\x04\xff.")


def test_torch_files_are_scanned_zip_and_legacy(tmp_path):
    state = {"w": torch.zeros(3), "step": 4}
    for legacy in (False, True):
        path = tmp_path / f"ok-{legacy}.pt"
        torch.save(state, path, _use_new_zipfile_serialization=not legacy)
        scan_torch_file(path)
    (tmp_path / "text.pt").write_text("not a checkpoint")
    scan_torch_file(tmp_path / "text.pt")  # left to torch.load
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 cut")
    with pytest.raises(PickleScanError, match="zip archive that cannot be read"):
        scan_torch_file(tmp_path / "cut.pt")


def test_shown_bounds_any_value():
    deep: object = 0
    for _ in range(50):
        deep = (deep, deep)
    for value in (deep, "x" * 10**6, 10**5000, ValueError("y" * 10**6), list(range(10**5))):
        assert len(shown(value)) <= MAX_SHOWN


def test_dense_layouts():
    assert is_dense((2, 3), (3, 1)) and is_dense((2, 3), (1, 2)) and is_dense((1, 5), (99, 1))
    assert is_dense((0, 5), (0, 0))
    assert not is_dense((2, 3), (0, 1)) and not is_dense((2, 3), (1, 1))
    assert not is_dense((2, 3), (4, 1))  # gaps
    expanded = {"w": torch.zeros(1).expand(4, 4)}
    with pytest.raises(TeacherFileError, match="not a dense layout"):
        check_stored_tensors(expanded, "test")
    base = torch.zeros(10**5)
    views = {f"v{i}": base[:] for i in range(4)}  # dense each, 4x the stored bytes together
    with pytest.raises(TeacherFileError, match="declare 1600000 bytes but the file stores 400000"):
        check_stored_tensors(views, "test")
    check_stored_tensors({"a": torch.zeros(3, 4).t(), "b": torch.zeros(5)}, "test")
    with pytest.raises(TeacherFileError, match="plain strided"):
        check_stored_tensors({"s": torch.zeros(3, 3).to_sparse()}, "test")


def test_generator_kwargs_schema():
    kwargs = small_generator(32, channel_base=256, channel_max=32).init_kwargs
    check_generator_kwargs((), kwargs, "test")
    bad = [
        {"img_resolution": 48},
        {"img_resolution": 4096},
        {"z_dim": True},
        {"w_dim": 2**15},
        {"surprise": 1},
        {"mapping_kwargs": {"num_layers": 10**9}},
        {"mapping_kwargs": {"lr_multiplier": float("nan")}},
        {"synthesis_kwargs": {"num_fp16_res": 4}},  # 32 px has only 4 blocks: 4 is fine, 5 not
        {"synthesis_kwargs": {"resample_filter": [1] * 17}},
        {"synthesis_kwargs": {"architecture": "other"}},
        {"synthesis_kwargs": {"use_noise": 1}},
    ]
    for change in bad:
        candidate = {**kwargs, **change}
        if change == {"synthesis_kwargs": {"num_fp16_res": 4}}:
            check_generator_kwargs((), candidate, "test")
            candidate = {**kwargs, "synthesis_kwargs": {"num_fp16_res": 5}}
        with pytest.raises(TeacherFileError):
            check_generator_kwargs((), candidate, "test")
    with pytest.raises(TeacherFileError, match="positional"):
        check_generator_kwargs((16,), kwargs, "test")


def test_valid_network_pickle_still_loads_after_refusals():
    from solo_sqsp.teachers.network_pickle import load_network_pkl

    valid = nvidia_network_pickle(small_generator(16, channel_base=32, channel_max=8))
    function = pickle.GLOBAL + b"torch._utils\n_rebuild_tensor_v2\n"
    state = pickle.EMPTY_DICT + pickle.SHORT_BINUNICODE + b"\x0c__defaults__"
    hostile = PROTO4 + function + state + pickle.NONE + pickle.SETITEM + pickle.BUILD + pickle.STOP
    with pytest.raises(TeacherFileError, match="BUILD"):
        load_network_pkl(io.BytesIO(hostile))
    assert load_network_pkl(io.BytesIO(valid))["G_ema"] is not None
