"""Bounded formatting of values read from files, for error messages: a hostile file must not turn
one message into megabytes (a shared sub-tree doubling per level, a huge int, a long string)."""

from __future__ import annotations

import reprlib

MAX_SHOWN = 300  # characters of one shown value

_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 120, 120


def shown(value: object, limit: int = MAX_SHOWN) -> str:
    """``repr`` of ``value`` (type and message for an exception), at most ``limit`` characters;
    containers are summarised by ``reprlib`` before anything is formatted whole."""
    try:
        if isinstance(value, BaseException):
            text = f"{type(value).__name__}: {value}"
        else:
            text = _REPR.repr(value)
    except Exception:  # e.g. an int too long for str(); never let formatting fail
        text = f"<{type(value).__name__} that cannot be shown>"
    return clipped(text, limit)


def clipped(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` itself, cut to at most ``limit`` characters."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
