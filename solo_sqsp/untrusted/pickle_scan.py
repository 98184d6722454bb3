"""A pre-scan of a pickle stream, run before it is unpickled, that refuses streams whose objects
would exhaust memory, time or the C stack once built, hashed or printed.

It walks the opcodes (``pickletools.genops``) and simulates the unpickler's stack and memo as a
graph of containers and calls, then refuses: nesting deeper than ``max_depth``; an object tree
that, with every memo reference expanded into a copy, has more than ``max_nodes`` nodes (a shared
sub-tree doubling at each level); a container with more than ``max_items`` direct items; memo
indices far beyond the memo's size (the C unpickler sizes its memo array by the index); cycles;
and, when ``build_globals`` is given, the BUILD opcode on anything but objects made by calling
those globals. Nothing from the stream is imported, called or allocated beyond its own bytes.
"""

from __future__ import annotations

import io
import os
import pickletools
import zipfile
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

from solo_sqsp.untrusted.bounded_text import shown

MAX_DEPTH = 100
MAX_NODES = 2_000_000
MAX_ITEMS = 1_000_000
MEMO_SLACK = 1024  # memo indices may exceed the number of stored items by this much
VIEW_READ_BYTES = 4096  # longer reads of a bytes stream are views, not copies
MAX_TORCH_PICKLE_BYTES = 256 * 2**20  # data.pkl of a torch.save zip (tensors are apart)
LEGACY_TORCH_PICKLES = 5  # magic, protocol, sys_info, object, storage keys
_ZIP_MAGIC = b"PK\x03\x04"
_PROTO = b"\x80"

_PUSH_LEAF = frozenset(
    [
        "INT",
        "BININT",
        "BININT1",
        "BININT2",
        "LONG",
        "LONG1",
        "LONG4",
        "STRING",
        "BINSTRING",
        "SHORT_BINSTRING",
        "BINBYTES",
        "SHORT_BINBYTES",
        "BINBYTES8",
        "BYTEARRAY8",
        "UNICODE",
        "SHORT_BINUNICODE",
        "BINUNICODE",
        "BINUNICODE8",
        "NONE",
        "NEWTRUE",
        "NEWFALSE",
        "FLOAT",
        "BINFLOAT",
        "NEXT_BUFFER",
        "EXT1",
        "EXT2",
        "EXT4",
    ]
)
_EMPTY = frozenset(["EMPTY_LIST", "EMPTY_DICT", "EMPTY_TUPLE", "EMPTY_SET"])
_FROM_MARK = frozenset(["TUPLE", "LIST", "DICT", "FROZENSET"])
_TUPLE_N = {"TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}
_ADD_FROM_MARK = frozenset(["APPENDS", "SETITEMS", "ADDITEMS"])
_PUT = frozenset(["PUT", "BINPUT", "LONG_BINPUT"])
_GET = frozenset(["GET", "BINGET", "LONG_BINGET"])
_IGNORED = frozenset(["PROTO", "FRAME", "READONLY_BUFFER", "STOP"])


class PickleScanError(ValueError):
    """A pickle stream is malformed or exceeds a limit. The message is a predicate (``nests
    objects deeper than 100 levels``) that callers prefix with what the stream is."""


@dataclass(frozen=True)
class _Global:
    """A global the stream names (GLOBAL, STACK_GLOBAL, INST): a leaf that may be called."""

    module: str
    name: str


class _BytesReader:
    """The file interface ``pickletools.genops`` reads, over bytes; long reads (tensor storages)
    return views instead of copies, which keeps the scan of a large pickle cheap."""

    def __init__(self, data: bytes) -> None:
        self.data, self.view, self.position = data, memoryview(data), 0

    def read(self, size: int = -1) -> bytes | memoryview:
        start = self.position
        end = len(self.data) if size < 0 else min(start + size, len(self.data))
        self.position = end
        return self.view[start:end] if end - start > VIEW_READ_BYTES else self.data[start:end]

    def readline(self) -> bytes:
        end = self.data.find(b"\n", self.position)
        return bytes(self.read(-1 if end < 0 else end + 1 - self.position))

    def tell(self) -> int:
        return self.position


class _Node:
    """A container or call result: its leaf items counted, its other items kept as edges."""

    __slots__ = ("children", "depth", "leaves", "low_depth", "low_size", "origin", "size")

    def __init__(self) -> None:
        self.origin: _Global | None = None
        self.leaves = 0
        self.children: list[_Node] = []
        self.low_depth = self.low_size = 1  # lower bounds, from the items as they were added
        self.depth = 0  # 0 until measured by _check_graph, -1 while on its path
        self.size = 0

    def add(self, item: Any) -> None:
        if type(item) is _Node:
            self.children.append(item)
            self.low_depth = max(self.low_depth, item.low_depth + 1)
            self.low_size += item.low_size
        else:
            self.leaves += 1
            self.low_size += 1


@dataclass
class _Limits:
    max_depth: int
    max_nodes: int
    max_items: int
    build_globals: Collection[tuple[str, str]] | None


def scan_pickle(
    stream: bytes | BinaryIO,
    *,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    max_items: int = MAX_ITEMS,
    build_globals: Collection[tuple[str, str]] | None = None,
) -> int:
    """Check the pickle at the start of ``stream`` (bytes, or a binary file read from its current
    position) and return the position just past its STOP opcode. Raises ``PickleScanError``
    (a ``ValueError``) naming the first problem; callers re-raise it as their own error type.
    ``build_globals`` (``(module, name)`` pairs), when given, are the only callables whose results
    the BUILD opcode may update."""
    if isinstance(stream, bytes | bytearray | memoryview):
        stream = _BytesReader(bytes(stream))
    limits = _Limits(max_depth, max_nodes, max_items, build_globals)
    stack: list[Any] = []
    marks: list[int] = []
    memo: dict[int, Any] = {}
    nodes: list[_Node] = []
    try:
        for opcode, arg, _position in pickletools.genops(stream):
            name = opcode.name
            if name == "STOP":
                if len(stack) != 1 or marks:
                    raise PickleScanError("stops with a malformed stack")
                _check_graph(nodes, limits)
                return stream.tell()
            _step(name, arg, stack, marks, memo, nodes, limits)
            top = stack[-1] if stack else None
            if type(top) is _Node:  # every opcode that makes or grows a node leaves it on top
                _check_size(top.low_depth, top.low_size, limits)
    except PickleScanError:
        raise
    except (ValueError, IndexError, KeyError) as err:
        raise PickleScanError(f"is truncated or corrupt ({shown(err)})") from err
    raise PickleScanError("is truncated or corrupt (no STOP opcode)")


def scan_torch_file(path: str | os.PathLike[str]) -> None:
    """``scan_pickle`` on the pickles ``torch.load`` would read from ``path``: each
    ``<folder>/data.pkl`` of a zip-format ``torch.save`` file, or the leading pickles of a legacy
    one; files of other kinds are left to ``torch.load`` to refuse. Raises ``PickleScanError``
    whose message is a clause about the file (``its pickle nests objects ...``)."""
    with open(path, "rb") as stream:
        head = stream.read(len(_ZIP_MAGIC))
        if head.startswith(_PROTO):
            stream.seek(0)
            for _ in range(LEGACY_TORCH_PICKLES):
                _scan_clause(stream)
                if stream.read(1) != _PROTO:
                    return
                stream.seek(-1, io.SEEK_CUR)
            return
    if head != _ZIP_MAGIC:
        return
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.rpartition("/")[2] != "data.pkl":
                    continue
                if info.file_size > MAX_TORCH_PICKLE_BYTES:
                    raise PickleScanError(f"its data.pkl has {info.file_size} bytes")
                with archive.open(info) as member:
                    _scan_clause(member.read(MAX_TORCH_PICKLE_BYTES + 1))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as err:
        raise PickleScanError(f"it is a zip archive that cannot be read: {shown(err)}") from err


def _scan_clause(stream: bytes | BinaryIO) -> None:
    try:
        scan_pickle(stream)
    except PickleScanError as err:
        raise PickleScanError(f"its pickle {err}") from err


def _step(
    name: str,
    arg: Any,
    stack: list[Any],
    marks: list[int],
    memo: dict[int, Any],
    nodes: list[_Node],
    limits: _Limits,
) -> None:
    """Apply one opcode to the simulated stack (leaves are ``None`` or, for strings, the str)."""
    if name in _GET:  # the most frequent opcodes first
        stack.append(memo[arg])
    elif name in _PUT or name == "MEMOIZE":
        index = len(memo) if name == "MEMOIZE" else arg
        if index > len(memo) + MEMO_SLACK:
            raise PickleScanError(f"stores memo entry {index} of only {len(memo)}")
        memo[index] = stack[-1]
    elif name in _PUSH_LEAF:
        stack.append(arg if isinstance(arg, str) else None)
    elif name in _IGNORED:
        return
    elif name == "MARK":
        marks.append(len(stack))
    elif name in _EMPTY:
        stack.append(_new(nodes))
    elif name in _FROM_MARK:
        stack.append(_new(nodes, items=_pop_mark(stack, marks), limits=limits))
    elif name in _TUPLE_N:
        count = _TUPLE_N[name]
        items = stack[-count:]
        if len(items) != count:
            raise IndexError("stack underflow")
        del stack[-count:]
        stack.append(_new(nodes, items=items))
    elif name == "APPEND":
        item = stack.pop()
        _target(stack).add(item)
    elif name == "SETITEM":
        value, key = stack.pop(), stack.pop()
        target = _target(stack)
        target.add(key)
        target.add(value)
    elif name in _ADD_FROM_MARK:
        items = _pop_mark(stack, marks)
        target = _target(stack)
        for item in items:
            target.add(item)
        if target.leaves + len(target.children) > limits.max_items:
            raise PickleScanError(f"has a container of more than {limits.max_items} items")
    elif name == "POP":
        if marks and marks[-1] == len(stack):
            marks.pop()
        else:
            stack.pop()
    elif name == "POP_MARK":
        _pop_mark(stack, marks)
    elif name == "DUP":
        stack.append(stack[-1])
    elif name == "GLOBAL":
        module, _, attribute = arg.partition(" ")
        stack.append(_Global(module, attribute))
    elif name == "STACK_GLOBAL":
        attribute, module = stack.pop(), stack.pop()
        if not (isinstance(module, str) and isinstance(attribute, str)):
            raise PickleScanError("names a global by something other than strings")
        stack.append(_Global(module, attribute))
    elif name in ("PERSID", "BINPERSID"):
        if name == "BINPERSID":
            stack.pop()
        stack.append(None)
    elif name in ("REDUCE", "NEWOBJ", "NEWOBJ_EX"):
        arguments = [stack.pop() for _ in range({"REDUCE": 1, "NEWOBJ": 1}.get(name, 2))]
        stack.append(_call(nodes, stack.pop(), arguments))
    elif name in ("OBJ", "INST"):
        items = _pop_mark(stack, marks)
        if name == "INST":
            module, _, attribute = arg.partition(" ")
            callee: Any = _Global(module, attribute)
        else:
            callee, items = items[0], items[1:]
        stack.append(_call(nodes, callee, items))
    elif name == "BUILD":
        state = stack.pop()
        target = stack[-1]
        allowed = limits.build_globals
        if allowed is not None and not (
            isinstance(target, _Node)
            and target.origin is not None
            and (target.origin.module, target.origin.name) in allowed
        ):
            raise PickleScanError(
                "sets the state of an object (BUILD) that may not have one; "
                "only objects of " + ", ".join(sorted(f"{m}.{n}" for m, n in allowed)) + " may"
            )
        _target(stack).add(state)
    else:
        raise PickleScanError(f"uses opcode {name}, which this reader does not accept")


def _new(nodes: list[_Node], items: Sequence[Any] = (), limits: _Limits | None = None) -> _Node:
    node = _Node()
    for item in items:
        node.add(item)
    if limits is not None and len(items) > limits.max_items:
        raise PickleScanError(f"has a container of more than {limits.max_items} items")
    nodes.append(node)
    return node


def _call(nodes: list[_Node], callee: Any, arguments: list[Any]) -> _Node:
    node = _new(nodes, arguments)
    node.origin = callee if isinstance(callee, _Global) else None
    node.add(callee)
    return node


def _target(stack: list[Any]) -> _Node:
    target = stack[-1]
    if not isinstance(target, _Node):
        raise PickleScanError("adds items to an object that is no container")
    return target


def _pop_mark(stack: list[Any], marks: list[int]) -> list[Any]:
    start = marks.pop()
    items = stack[start:]
    del stack[start:]
    return items


def _check_graph(nodes: list[_Node], limits: _Limits) -> None:
    """Depth and expanded size of every node (iteratively, children before parents); cycles are
    refused, sizes saturate just past the limit so that the numbers stay small."""
    for root in nodes:
        if root.depth:
            continue
        root.depth = -1
        pending: list[tuple[_Node, int]] = [(root, 0)]
        while pending:
            node, next_child = pending[-1]
            if next_child < len(node.children):
                pending[-1] = (node, next_child + 1)
                child = node.children[next_child]
                if child.depth == -1:
                    raise PickleScanError("holds an object that contains itself")
                if not child.depth:
                    child.depth = -1
                    pending.append((child, 0))
                continue
            pending.pop()
            depth, size = 0, 1 + node.leaves
            for child in node.children:
                depth = max(depth, child.depth)
                size += child.size
            node.depth, node.size = depth + 1, min(size, limits.max_nodes + 1)
            _check_size(node.depth, node.size, limits)


def _check_size(depth: int, size: int, limits: _Limits) -> None:
    if depth > limits.max_depth:
        raise PickleScanError(f"nests objects deeper than {limits.max_depth} levels")
    if size > limits.max_nodes:
        raise PickleScanError(
            f"has objects that, with shared parts expanded, exceed {limits.max_nodes} items "
            "(a memo reference reused to blow up)"
        )
