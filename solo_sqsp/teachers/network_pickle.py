"""Read NVIDIA StyleGAN2-ADA network pickles without running the code they carry; save and load
teacher checkpoints in our own format.

NVIDIA's pickles (``torch_utils/persistence.py`` of stylegan2-ada-pytorch) store each network
module as a persistence record: its class name, constructor arguments, tensors and the whole
source of ``training/networks.py``, which NVIDIA's own loader executes. We read the records as
plain data (``PersistentRecord``), build our clean-room ``stylegan2.Generator`` from the recorded
constructor arguments and load the recorded tensors into it; the source is dropped unread.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
from torch import Tensor, nn

from solo_sqsp.teachers import stylegan2
from solo_sqsp.teachers.errors import TeacherFileError, UnsafePickleError
from solo_sqsp.teachers.generator_kwargs import check_generator_kwargs
from solo_sqsp.teachers.tensor_budget import check_stored_tensors, is_dense
from solo_sqsp.untrusted.bounded_text import clipped, shown
from solo_sqsp.untrusted.pickle_scan import PickleScanError, scan_pickle, scan_torch_file

PERSISTENCE_VERSION = 6  # torch_utils.persistence._version of NVIDIA's released code
SNAPSHOT_KEYS = ("training_set_kwargs", "G", "D", "G_ema", "augment_pipe")
GENERATOR_CLASSES = frozenset(
    name
    for name, value in vars(stylegan2).items()
    if isinstance(value, type) and issubclass(value, nn.Module)
)
CHECKPOINT_FORMAT = "solo-sqsp-teacher"
CHECKPOINT_VERSION = 1

ZIP_MAGIC = b"PK\x03\x04"
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of a legacy (non-zip) torch.save
LEGACY_TORCH_PROTOCOL = 1001
STORAGE_ITEM_BYTES = {  # legacy storage classes a storage blob may name, and their item sizes
    "DoubleStorage": 8,
    "FloatStorage": 4,
    "HalfStorage": 2,
    "BFloat16Storage": 2,
    "LongStorage": 8,
    "IntStorage": 4,
    "ShortStorage": 2,
    "CharStorage": 1,
    "ByteStorage": 1,
    "BoolStorage": 1,
}
NUMERIC_DTYPE_KINDS = "biufc"  # numpy kinds: bool, int, unsigned, float, complex
MAX_LISTED_NAMES = 8  # names shown per list in an error message
MAX_PLAIN_DEPTH = 32  # nesting allowed in the plain data of our checkpoints
MAX_NAME_CHARS = 100  # class names and child names of persistence records
MAX_RECORDS = 10_000  # module records in one network
BUILD_GLOBALS = frozenset({("numpy", "dtype")})  # the only objects NVIDIA pickles BUILD
LEGACY_BLOB_PICKLES = 5  # magic, protocol, sys_info, object, storage keys

_TYPED_STORAGE_WARNING = "TypedStorage is deprecated"
_EXPECTED_PICKLE = "expected a StyleGAN2-ADA network pickle: a pickled dict with keys " + ", ".join(
    SNAPSHOT_KEYS
)


@dataclass(frozen=True, eq=False)
class PersistentRecord:
    """One network module of an NVIDIA pickle as plain data: what
    ``torch_utils.persistence._reconstruct_persistent_obj`` would rebuild by running the
    module's source, minus the source.

    ``buffers`` holds the persistent buffers only (those ``nn.Module.state_dict`` keeps);
    ``attributes`` the module's other public attributes (``z_dim``, ``conv_clamp``, gains, ...).
    """

    class_name: str
    module_name: str | None
    init_args: tuple[Any, ...]
    init_kwargs: dict[str, Any]
    parameters: dict[str, Tensor]
    buffers: dict[str, Tensor]
    children: dict[str, PersistentRecord]
    attributes: dict[str, Any]

    def walk(self) -> Iterator[tuple[str, PersistentRecord]]:
        """``(dotted path, record)`` of this record (path ``""``) and of every record below it,
        parents before children, children in stored order (``nn.Module.named_modules``)."""
        seen: set[int] = set()
        pending: list[tuple[str, PersistentRecord]] = [("", self)]
        while pending:
            path, record = pending.pop()
            if id(record) in seen:
                raise TeacherFileError(
                    f"module record {shown(record.class_name)} appears twice in one network "
                    f"(again at {shown(path)}); network pickles store a tree of modules"
                )
            if len(seen) >= MAX_RECORDS:
                raise TeacherFileError(f"a network holds more than {MAX_RECORDS} module records")
            seen.add(id(record))
            yield path, record
            prefix = f"{path}." if path else ""
            pending.extend(
                (prefix + name, child) for name, child in reversed(record.children.items())
            )

    def state_dict(self) -> dict[str, Tensor]:
        """All tensors under ``nn.Module.state_dict``'s dotted names, in its order (each module's
        parameters, then its buffers, then its children), e.g. ``synthesis.b4.conv1.weight``."""
        state: dict[str, Tensor] = {}
        for path, record in self.walk():
            prefix = f"{path}." if path else ""
            for name, tensor in (*record.parameters.items(), *record.buffers.items()):
                state[prefix + name] = tensor
        return state


def load_network_pkl(file_obj: BinaryIO) -> dict[str, Any]:
    """The networks of a StyleGAN2-ADA network pickle (training snapshot or converted TF pickle).

    Returns ``G_ema`` (and ``G``, or None when absent) as ``stylegan2.Generator`` modules in eval
    mode without gradients, built from the recorded ``_init_args``/``_init_kwargs`` and loaded
    with the recorded tensors (``load_state_dict(strict=True)``); ``D`` and ``augment_pipe`` as
    ``PersistentRecord`` data (or None); ``training_set_kwargs`` as a dict (or None).

    Only the globals NVIDIA's pickles use are resolved, each to a data-only stand-in; any other
    raises ``UnsafePickleError`` before it could run. Before unpickling, the stream (and each
    tensor storage blob in it) is pre-scanned (``pickle_scan.scan_pickle``: nesting, shared
    sub-trees, BUILD only on numpy dtypes); before building, the tensors' layouts and sizes
    (``tensor_budget``) and the recorded constructor arguments (``generator_kwargs``) are checked.
    Empty, truncated, corrupt, crafted or other kinds of files raise ``TeacherFileError``;
    messages start with the file's name when it has one and show file values bounded.
    """
    try:
        return _load_networks(file_obj)
    except TeacherFileError as err:
        name = getattr(file_obj, "name", None)
        if isinstance(name, str):
            err.args = (f"{clipped(name)}: {err}", *err.args[1:])
        raise


def save_teacher_checkpoint(
    generator: stylegan2.Generator,
    path: str | os.PathLike[str],
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Write ``generator`` to ``path`` in our teacher checkpoint format, atomically (a temporary
    file in the same folder, then ``os.replace``): a ``torch.save`` dict with ``format``,
    ``version``, ``class_name``, ``init_kwargs`` (plain data), ``state_dict`` and ``extra``
    (plain data and tensors, e.g. where the weights came from)."""
    if not isinstance(generator, stylegan2.Generator):
        raise TypeError(
            f"save_teacher_checkpoint saves a stylegan2.Generator, got {type(generator).__name__}"
        )
    payload = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "class_name": type(generator).__name__,
        "init_kwargs": _plain_copy(dict(generator.init_kwargs), "generator.init_kwargs"),
        "state_dict": {
            name: t.detach().cpu().clone() for name, t in generator.state_dict().items()
        },
        "extra": _plain_copy(dict(extra or {}), "extra"),
    }
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "xb") as stream:
            torch.save(payload, stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)


def load_teacher_checkpoint(path: str | os.PathLike[str]) -> stylegan2.Generator:
    """The generator saved by ``save_teacher_checkpoint`` at ``path``, in eval mode without
    gradients. Read with ``torch.load(weights_only=True)``: a file holding anything but tensors
    and plain data raises ``UnsafePickleError``; other kinds of files ``TeacherFileError``."""
    file = Path(path)
    expected = f"expected a {CHECKPOINT_FORMAT} checkpoint written by save_teacher_checkpoint"
    if not file.is_file():
        raise TeacherFileError(f"teacher checkpoint not found: {file}")
    if file.stat().st_size == 0:
        raise TeacherFileError(f"teacher checkpoint {file} is empty; {expected}")
    try:
        scan_torch_file(file)
        with warnings.catch_warnings():  # foreign pickles of protocol > 2 warn before refusal
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            payload = torch.load(file, map_location="cpu", weights_only=True)
    except PickleScanError as err:
        raise TeacherFileError(f"{file} is refused: {err}; {expected}") from err
    except pickle.UnpicklingError as err:
        found = re.search(
            r"WeightsUnpickler error:\s*(.*?)(\.\s|\s*Check the doc|$)", str(err), re.S
        )
        reason = clipped(" ".join((found.group(1) if found else str(err)).split()))
        raise UnsafePickleError(
            f"{file} holds objects other than tensors and plain data, which "
            f"torch.load(weights_only=True) refuses ({reason}); {expected} (an NVIDIA network "
            "pickle loads with load_network_pkl)"
        ) from err
    except Exception as err:
        raise TeacherFileError(
            f"{file} is not a readable torch.save file ({shown(err)}); {expected}"
        ) from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = (
            f"a dict with format {shown(payload.get('format'))}"
            if isinstance(payload, dict)
            else f"a {type(payload).__name__}"
        )
        raise TeacherFileError(f"{file} holds {found}, not a teacher checkpoint; {expected}")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise TeacherFileError(
            f"{file} is a teacher checkpoint of version {shown(payload.get('version'))}; this code "
            f"reads version {CHECKPOINT_VERSION}"
        )
    if payload.get("class_name") != "Generator":
        raise TeacherFileError(
            f"{file} holds a {shown(payload.get('class_name'))}; only 'Generator' checkpoints exist"
        )
    init_kwargs, state = payload.get("init_kwargs"), payload.get("state_dict")
    tensors = isinstance(state, dict) and all(
        isinstance(name, str) and isinstance(t, Tensor) for name, t in state.items()
    )
    if not isinstance(init_kwargs, dict) or not tensors:
        raise TeacherFileError(
            f"{file} lacks a dict 'init_kwargs' or a 'state_dict' of tensors; {expected}"
        )
    return _build_generator((), init_kwargs, state, f"teacher checkpoint {file}")


# --- restricted unpickling --------------------------------------------------------------------


class _NetworkUnpickler(pickle.Unpickler):
    """Resolves only the globals of NVIDIA network pickles, each to a data-only stand-in; any
    other global raises ``UnsafePickleError`` before anything is called."""

    def find_class(self, module: str, name: str) -> Callable[..., Any]:
        stand_in = _NETWORK_PICKLE_GLOBALS.get((module, name))
        if stand_in is None:
            hint = (
                "; this is a TensorFlow StyleGAN pickle: convert it with NVIDIA's legacy.py first"
                if module.startswith("dnnlib.tflib")
                else ""
            )
            raise UnsafePickleError(
                f"refusing to load global {module}.{name}: network pickles contain only tensors, "
                f"plain data and torch_utils.persistence records{hint}"
            )
        return stand_in

    def persistent_load(self, pid: Any) -> Any:
        raise TeacherFileError(
            f"the pickle uses a persistent id ({type(pid).__name__}); network pickles have none"
        )


class _StorageBlobHeader(pickle.Unpickler):
    """Reads the pickles ahead of the raw bytes in a legacy ``torch.save`` storage blob, noting
    the byte size each storage declares (``persistent_load``) without allocating it."""

    def __init__(self, stream: BinaryIO) -> None:
        super().__init__(stream)
        self.declared_bytes: dict[str, int] = {}

    def find_class(self, module: str, name: str) -> str:
        if module == "torch" and name in STORAGE_ITEM_BYTES:
            return name
        raise UnsafePickleError(
            f"refusing to load global {module}.{name} in a tensor storage blob: it may name only "
            f"torch.<T>Storage for T in {sorted(STORAGE_ITEM_BYTES)}"
        )

    def persistent_load(self, pid: Any) -> None:
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == "storage"):
            raise TeacherFileError("a tensor storage blob has a malformed storage reference")
        _, storage_class, key, _location, numel, _view = pid
        if storage_class not in STORAGE_ITEM_BYTES or not isinstance(key, str):
            raise TeacherFileError("a tensor storage blob has a malformed storage reference")
        if not isinstance(numel, int) or numel < 0:
            raise TeacherFileError(f"a tensor storage blob declares {shown(numel)} elements")
        self.declared_bytes[key] = numel * STORAGE_ITEM_BYTES[storage_class]


def _load_networks(file_obj: BinaryIO) -> dict[str, Any]:
    snapshot = _unpickle_network_file(file_obj)
    try:
        return _networks_of(snapshot)
    except TeacherFileError:
        raise
    except Exception as err:  # any other failure on unpickled data is a problem of the file
        raise TeacherFileError(f"the network pickle is malformed ({shown(err)})") from err


def _networks_of(snapshot: dict[Any, Any]) -> dict[str, Any]:
    records = {key: _snapshot_entry(snapshot, key) for key in ("G", "D", "G_ema", "augment_pipe")}
    if records["G_ema"] is None:
        raise TeacherFileError(f"the pickle's 'G_ema' is None; {_EXPECTED_PICKLE}")
    training_set_kwargs = snapshot.get("training_set_kwargs")
    if not isinstance(training_set_kwargs, dict | None):
        raise TeacherFileError(
            f"the pickle's 'training_set_kwargs' is a {type(training_set_kwargs).__name__}; "
            "expected a dict or None"
        )
    G_ema = _generator_from_record(records["G_ema"], "G_ema")
    return {
        "training_set_kwargs": training_set_kwargs,
        "G": None if records["G"] is None else _generator_from_record(records["G"], "G"),
        "D": records["D"],
        "G_ema": G_ema,
        "augment_pipe": records["augment_pipe"],
    }


def _unpickle_network_file(file_obj: BinaryIO) -> dict[Any, Any]:
    data = file_obj.read()
    if not isinstance(data, bytes):
        raise TypeError("load_network_pkl reads a file opened in binary mode ('rb')")
    if not data:
        raise TeacherFileError(f"the file is empty; {_EXPECTED_PICKLE}")
    if data.startswith(ZIP_MAGIC):
        raise TeacherFileError(
            "the file is a zip archive (torch.save's format: a solo-sqsp teacher checkpoint loads "
            f"with load_teacher_checkpoint), not a network pickle; {_EXPECTED_PICKLE}"
        )
    if data[0] != pickle.PROTO[0] or len(data) < 2 or not 2 <= data[1] <= pickle.HIGHEST_PROTOCOL:
        raise TeacherFileError(
            f"the file starts with {data[:8]!r}, not with a pickle header of protocol 2 to "
            f"{pickle.HIGHEST_PROTOCOL}; {_EXPECTED_PICKLE}"
        )
    try:
        scan_pickle(data, build_globals=BUILD_GLOBALS)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_TYPED_STORAGE_WARNING)
            snapshot = _NetworkUnpickler(io.BytesIO(data)).load()
    except PickleScanError as err:
        raise TeacherFileError(
            f"the network pickle {err}; {_EXPECTED_PICKLE}; download or copy it again"
        ) from err
    except TeacherFileError:
        raise
    except Exception as err:
        raise TeacherFileError(
            f"the network pickle is truncated or corrupt ({shown(err)}); download or copy it again"
        ) from err
    if isinstance(snapshot, int) and snapshot == LEGACY_TORCH_MAGIC:
        raise TeacherFileError(f"the file is a legacy torch.save file; {_EXPECTED_PICKLE}")
    if not isinstance(snapshot, dict):
        raise TeacherFileError(f"the pickle holds a {type(snapshot).__name__}; {_EXPECTED_PICKLE}")
    if "G_ema" not in snapshot:
        keys = _name_list(map(shown, snapshot))
        raise TeacherFileError(
            f"the pickle holds a dict with keys {keys} but no 'G_ema'; {_EXPECTED_PICKLE}"
        )
    return snapshot


def _snapshot_entry(snapshot: dict[Any, Any], key: str) -> PersistentRecord | None:
    value = snapshot.get(key)
    if not isinstance(value, PersistentRecord | None):
        raise TeacherFileError(
            f"the pickle's {shown(key)} is a {type(value).__name__}; expected a network module "
            "(torch_utils.persistence record)"
        )
    return value


def _persistent_record(meta: Any) -> PersistentRecord:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``: the record as data.
    ``meta['module_src']`` is never compiled nor executed; it is not even kept."""
    if not isinstance(meta, dict) or meta.get("type") != "class":
        found = meta.get("type") if isinstance(meta, dict) else type(meta).__name__
        raise TeacherFileError(f"a persistence record is of type {shown(found)}; expected 'class'")
    class_name, state = meta.get("class_name"), meta.get("state")
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise TeacherFileError("a persistence record lacks a str 'class_name' or a dict 'state'")
    if len(class_name) > MAX_NAME_CHARS:
        raise TeacherFileError(f"a persistence record's class name {shown(class_name)} is too long")
    if meta.get("version") != PERSISTENCE_VERSION:
        raise TeacherFileError(
            f"persistence record {shown(class_name)} has version {shown(meta.get('version'))}; "
            f"this loader reads version {PERSISTENCE_VERSION} (NVIDIA stylegan2-ada-pytorch)"
        )
    module_name = meta.get("module_name")
    init_args, init_kwargs = state.get("_init_args", ()), state.get("_init_kwargs", {})
    children = _record_table(state, "_modules", PersistentRecord, class_name)
    if not isinstance(init_args, tuple | list) or not isinstance(init_kwargs, dict):
        raise TeacherFileError(f"record {shown(class_name)} has malformed _init_args/_init_kwargs")
    non_persistent = state.get("_non_persistent_buffers_set", set())
    return PersistentRecord(
        class_name=class_name,
        module_name=module_name if isinstance(module_name, str) else None,
        init_args=tuple(init_args),
        init_kwargs=init_kwargs,
        parameters=_record_table(state, "_parameters", Tensor, class_name),
        buffers={
            name: tensor
            for name, tensor in _record_table(state, "_buffers", Tensor, class_name).items()
            if name not in non_persistent
        },
        children=children,
        attributes={
            name: value
            for name, value in state.items()
            if isinstance(name, str) and not name.startswith("_") and name != "training"
        },
    )


def _record_table(state: dict[Any, Any], key: str, kind: type, class_name: str) -> dict[str, Any]:
    """``state[key]`` (an nn.Module's ``_parameters``, ``_buffers`` or ``_modules``) without its
    None entries, checked to map names to ``kind``."""
    table = state.get(key)
    if not isinstance(table, dict):
        raise TeacherFileError(
            f"record {shown(class_name)} has no dict {key!r}; network records are torch.nn.Modules"
        )
    for name, value in table.items():
        if not isinstance(name, str) or not isinstance(value, kind | None):
            raise TeacherFileError(
                f"record {shown(class_name)} has {type(value).__name__} {shown(name)} in {key}; "
                f"expected {kind.__name__} values"
            )
        if len(name) > MAX_NAME_CHARS:
            raise TeacherFileError(f"record {shown(class_name)} has too long a name in {key}")
    return {name: value for name, value in table.items() if value is not None}


def _rebuild_tensor(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a dense view of ``storage``, checked to
    lie inside it (``Tensor.set_`` would silently grow the storage: a memory bomb)."""
    if not isinstance(storage, torch.storage.TypedStorage):
        raise TeacherFileError(f"a tensor is built on a {type(storage).__name__}, not a storage")
    if not (_is_index(storage_offset) and _is_shape(size) and _is_shape(stride)):
        raise TeacherFileError("a tensor has a malformed offset, size or stride")
    if len(size) != len(stride) or not is_dense(size, stride):
        raise TeacherFileError(
            f"a tensor has size {shown(tuple(size))} but stride {shown(tuple(stride))}; only "
            "dense, non-overlapping layouts load"
        )
    if all(size):
        end = storage_offset + 1 + sum((n - 1) * step for n, step in zip(size, stride, strict=True))
        if end > storage.size():
            raise TeacherFileError(
                f"a tensor of size {shown(tuple(size))} reaches element {end} of a storage of "
                f"{storage.size()} elements; the file is corrupt"
            )
    return torch.empty(0, dtype=storage.dtype).set_(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any) -> Tensor:
    """Stand-in for ``torch._utils._rebuild_parameter``: the parameter's tensor."""
    if not isinstance(data, Tensor):
        raise TeacherFileError(f"a parameter holds a {type(data).__name__}, not a tensor")
    return data


def _load_storage_blob(blob: Any) -> torch.storage.TypedStorage:
    """Stand-in for ``torch.storage._load_from_bytes``: a nested legacy ``torch.save`` blob read
    with ``torch.load(weights_only=True)`` once its declared sizes match its length."""
    if not isinstance(blob, bytes):
        raise TeacherFileError(f"a tensor storage is a {type(blob).__name__}, not bytes")
    _check_storage_blob(blob)
    try:
        storage = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as err:
        raise TeacherFileError(f"a tensor storage blob is unreadable ({shown(err)})") from err
    if not isinstance(storage, torch.storage.TypedStorage):
        raise TeacherFileError(f"a tensor storage blob holds a {type(storage).__name__}")
    return storage


def _check_storage_blob(blob: bytes) -> None:
    """Legacy ``torch.save`` layout: pickles of the magic number, the protocol, sys_info, the
    object (storages as persistent ids with their sizes) and the storage keys, then per storage
    an int64 element count and its bytes. Raises unless the sizes add up to the blob's length,
    so that no storage larger than the file gets allocated."""
    stream = io.BytesIO(blob)
    header = _StorageBlobHeader(stream)
    try:
        for _ in range(LEGACY_BLOB_PICKLES):
            scan_pickle(stream, build_globals=())  # raises PickleScanError, a ValueError
        stream.seek(0)
        magic, protocol, _sys_info, _obj, keys = (header.load() for _ in range(LEGACY_BLOB_PICKLES))
    except TeacherFileError:
        raise
    except Exception as err:
        raise TeacherFileError(
            f"a tensor storage blob is truncated or corrupt ({shown(err)})"
        ) from err
    if magic != LEGACY_TORCH_MAGIC or protocol != LEGACY_TORCH_PROTOCOL:
        raise TeacherFileError("a tensor storage blob is not a legacy torch.save blob")
    if not isinstance(keys, list) or set(keys) != set(header.declared_bytes):
        raise TeacherFileError("a tensor storage blob lists other storages than it declares")
    declared = sum(8 + header.declared_bytes[key] for key in keys)
    present = len(blob) - stream.tell()
    if declared != present:
        raise TeacherFileError(
            f"a tensor storage blob declares {declared} bytes of data but holds {present}; "
            "the file is truncated or corrupt"
        )


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = True) -> np.dtype:
    """Stand-in for ``numpy.dtype``: numeric dtypes only, always a fresh copy (pickle's BUILD
    then sets its byte order on the copy, never on numpy's shared instance)."""
    if not isinstance(spec, str):
        raise TeacherFileError(f"a numpy dtype is given by a {type(spec).__name__}")
    try:
        dtype = np.dtype(spec, align=bool(align), copy=True)
    except TypeError as err:
        raise TeacherFileError(f"unknown numpy dtype {shown(spec)}") from err
    if dtype.kind not in NUMERIC_DTYPE_KINDS:
        raise TeacherFileError(f"numpy dtype {shown(spec)} is not numeric")
    return dtype


def _numpy_scalar(dtype: Any, data: Any) -> bool | int | float | complex:
    """Stand-in for ``numpy.core.multiarray.scalar``: the scalar as a Python number (NVIDIA
    stores gains such as ``weight_gain`` as numpy float64)."""
    numeric = isinstance(dtype, np.dtype) and dtype.kind in NUMERIC_DTYPE_KINDS
    if not numeric or dtype.hasobject or not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise TeacherFileError("a numpy scalar is malformed or not numeric")
    return np.frombuffer(data, dtype=dtype)[0].item()


_NETWORK_PICKLE_GLOBALS: dict[tuple[str, str], Callable[..., Any]] = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _persistent_record,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch.storage", "_load_from_bytes"): _load_storage_blob,
    ("collections", "OrderedDict"): dict,
    ("dnnlib.util", "EasyDict"): dict,
    ("builtins", "set"): set,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
}


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_shape(value: Any) -> bool:
    return isinstance(value, tuple | list | torch.Size) and all(map(_is_index, value))


# --- building our generator -------------------------------------------------------------------


def _generator_from_record(record: PersistentRecord, role: str) -> stylegan2.Generator:
    if record.class_name != "Generator":
        raise TeacherFileError(
            f"the pickle's {role!r} is a {shown(record.class_name)} network; expected a "
            "StyleGAN2-ADA 'Generator'"
        )
    unknown = [
        f"{clipped(path)} ({clipped(r.class_name)})"
        for path, r in record.walk()
        if r.class_name not in GENERATOR_CLASSES
    ]
    if unknown:
        raise TeacherFileError(
            f"the pickle's {role!r} contains modules our StyleGAN2 generator does not have: "
            f"{_name_list(unknown)}; only StyleGAN2-ADA generators load (not StyleGAN3 or "
            "modified architectures)"
        )
    return _build_generator(
        record.init_args, record.init_kwargs, record.state_dict(), f"network pickle {role!r}"
    )


def _build_generator(
    init_args: tuple[Any, ...], init_kwargs: dict[str, Any], state: dict[str, Tensor], source: str
) -> stylegan2.Generator:
    """``stylegan2.Generator(*init_args, **init_kwargs)`` loaded with ``state``. It is built on
    the meta device and its layout checked against ``state`` before any memory is allocated for
    it (so that no constructor arguments can allocate more than the tensors present in the file);
    every tensor it has is then allocated uninitialised and loaded from ``state``."""
    check_stored_tensors(state, source)
    check_generator_kwargs(init_args, init_kwargs, source)
    with torch.device("meta"):
        generator = _construct_generator(init_args, init_kwargs, source)
    _check_state_layout(generator.state_dict(), state, source)
    generator = generator.to_empty(device="cpu")
    try:
        generator.load_state_dict(state, strict=True)
    except Exception as err:  # e.g. a dtype that does not convert
        raise TeacherFileError(f"{source}: the stored tensors do not load ({shown(err)})") from err
    return generator.eval().requires_grad_(False)


def _construct_generator(
    init_args: tuple[Any, ...], init_kwargs: dict[str, Any], source: str
) -> stylegan2.Generator:
    try:
        return stylegan2.Generator(*init_args, **init_kwargs)
    except Exception as err:  # any failure on stored arguments is a problem of the file
        arguments = f"args {shown(init_args)}, kwargs {shown(init_kwargs)}"
        raise TeacherFileError(
            f"{source}: stylegan2.Generator rejects the stored constructor arguments "
            f"({arguments}): {shown(err)}"
        ) from err


def _check_state_layout(
    layout: Mapping[str, Tensor], state: Mapping[str, Tensor], source: str
) -> None:
    """Raise naming the missing, unexpected and misshapen tensors of ``state`` against the
    state_dict ``layout`` of the generator its constructor arguments describe."""
    missing = [name for name in layout if name not in state]
    unexpected = [clipped(name) for name in state if name not in layout]
    misshapen = [
        f"{clipped(name)} {shown(tuple(state[name].shape))} (expected {tuple(layout[name].shape)})"
        for name in layout
        if name in state and state[name].shape != layout[name].shape
    ]
    if missing or unexpected or misshapen:
        raise TeacherFileError(
            f"{source}: the stored tensors do not fit stylegan2.Generator built from the stored "
            f"constructor arguments: missing keys {_name_list(missing)}; unexpected keys "
            f"{_name_list(unexpected)}; shape mismatches {_name_list(misshapen)}"
        )


def _name_list(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:MAX_LISTED_NAMES])
    more = f", ... ({len(names)} in all)" if len(names) > MAX_LISTED_NAMES else ""
    return f"[{shown}{more}]"


def _plain_copy(value: Any, where: str, depth: int = 0) -> Any:
    """A copy of ``value`` made of dicts with str keys, lists, tuples, str, numbers, None and
    tensors (what ``torch.load(weights_only=True)`` reads back); numpy scalars become Python
    numbers. Raises TypeError naming ``where`` anything else sits."""
    if depth > MAX_PLAIN_DEPTH:
        raise TypeError(f"{where} is nested deeper than {MAX_PLAIN_DEPTH} levels")
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, np.generic) and value.dtype.kind in NUMERIC_DTYPE_KINDS:
        return value.item()
    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, list | tuple):
        items = [_plain_copy(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, Mapping) and all(isinstance(key, str) for key in value):
        return {
            key: _plain_copy(item, f"{where}[{key!r}]", depth + 1) for key, item in value.items()
        }
    raise TypeError(
        f"{where} holds a {type(value).__name__}; teacher checkpoints store only dicts with str "
        "keys, lists, tuples, str, numbers, None and tensors"
    )
