"""The schema of ``stylegan2.Generator``'s constructor arguments as a teacher file records them
(``_init_kwargs`` of a network pickle, ``init_kwargs`` of our checkpoints), checked before the
generator is built even on the meta device: values from a file never reach the constructor's
arithmetic unchecked (a huge resolution or layer count would build billion-element lists)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from solo_sqsp.teachers.errors import TeacherFileError
from solo_sqsp.teachers.stylegan2 import ACTIVATIONS, ARCHITECTURES
from solo_sqsp.untrusted.bounded_text import shown

MAX_WIDTH = 2**14  # feature widths, latent and class dims
MAX_CHANNEL_BASE = 2**26  # channels are min(channel_base // resolution, channel_max)
MAX_RESOLUTION = 2048
MAX_MAPPING_LAYERS = 64
MAX_IMAGE_CHANNELS = 64
MAX_KERNEL_SIZE = 15
MAX_FILTER_TAPS = 16
MAX_GAIN = 1e4  # lr multipliers and clamps

Check = Callable[[Any], bool]


def _int(low: int, high: int) -> Check:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _number(low: float, high: float) -> Check:
    real = (int, float)
    return lambda v: isinstance(v, real) and not isinstance(v, bool) and low <= v <= high


def _optional(check: Check) -> Check:
    return lambda v: v is None or check(v)


def _one_of(choices: tuple[str, ...] | Mapping[str, Any]) -> Check:
    return lambda v: isinstance(v, str) and v in choices


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _filter(value: Any) -> bool:
    """1-D taps (the 2-D outer product is made by the constructor), at most 16 of them."""
    if value is None or _number(-MAX_GAIN, MAX_GAIN)(value):
        return True
    return (
        isinstance(value, list | tuple)
        and 1 <= len(value) <= MAX_FILTER_TAPS
        and all(_number(-MAX_GAIN, MAX_GAIN)(tap) for tap in value)
    )


GENERATOR: dict[str, Check] = {
    "z_dim": _int(0, MAX_WIDTH),
    "c_dim": _int(0, MAX_WIDTH),
    "w_dim": _int(1, MAX_WIDTH),
    "img_resolution": lambda v: _int(4, MAX_RESOLUTION)(v) and v & (v - 1) == 0,
    "img_channels": _int(1, MAX_IMAGE_CHANNELS),
}
MAPPING: dict[str, Check] = {
    "num_layers": _int(1, MAX_MAPPING_LAYERS),
    "embed_features": _optional(_int(0, MAX_WIDTH)),
    "layer_features": _optional(_int(1, MAX_WIDTH)),
    "activation": _one_of(ACTIVATIONS),
    "lr_multiplier": lambda v: _number(0, MAX_GAIN)(v) and v > 0,
    "w_avg_beta": _optional(_number(0, 1)),
}
SYNTHESIS: dict[str, Check] = {
    "channel_base": _int(1, MAX_CHANNEL_BASE),
    "channel_max": _int(1, MAX_WIDTH),
    "num_fp16_res": _int(0, int(math.log2(MAX_RESOLUTION))),  # and at most the block count
    "conv_clamp": _optional(_number(0, MAX_GAIN)),
    "architecture": _one_of(ARCHITECTURES),
    "resample_filter": _filter,
    "fp16_channels_last": _boolean,
    "kernel_size": _int(1, MAX_KERNEL_SIZE),
    "use_noise": _boolean,
    "activation": _one_of(ACTIVATIONS),
}
NESTED = {"mapping_kwargs": MAPPING, "synthesis_kwargs": SYNTHESIS}


def check_generator_kwargs(init_args: tuple[Any, ...], init_kwargs: Any, source: str) -> None:
    """Raise ``TeacherFileError`` unless the recorded arguments fit the schema above: no
    positional arguments, known keys only, every value of its type and in its range, and
    ``num_fp16_res`` no more than the generator's number of synthesis blocks."""
    if init_args:
        raise TeacherFileError(
            f"{source}: the generator records positional arguments {shown(init_args)}; "
            "StyleGAN2-ADA generators are built from keyword arguments only"
        )
    _check_table(init_kwargs, GENERATOR, NESTED, "init_kwargs", source)
    missing = [key for key in GENERATOR if key not in init_kwargs]
    if missing:
        raise TeacherFileError(f"{source}: init_kwargs lack {missing}")
    for key, schema in NESTED.items():
        if init_kwargs.get(key) is not None:
            _check_table(init_kwargs[key], schema, {}, key, source)
    blocks = int(math.log2(init_kwargs["img_resolution"])) - 1
    fp16 = (init_kwargs.get("synthesis_kwargs") or {}).get("num_fp16_res", 0)
    if fp16 > blocks:
        raise TeacherFileError(
            f"{source}: synthesis_kwargs.num_fp16_res is {fp16} but the generator has only "
            f"{blocks} synthesis blocks"
        )


def _check_table(
    table: Any, schema: Mapping[str, Check], nested: Mapping[str, Any], where: str, source: str
) -> None:
    if not isinstance(table, dict):
        raise TeacherFileError(f"{source}: {where} is a {type(table).__name__}, not a dict")
    for key, value in table.items():
        if key in nested:
            if not isinstance(value, dict | None):
                raise TeacherFileError(f"{source}: {where}.{key} is not a dict")
            continue
        check = schema.get(key) if isinstance(key, str) else None
        if check is None:
            known = sorted([*schema, *nested])
            raise TeacherFileError(
                f"{source}: {where} has the unknown key {shown(key)}; known keys are {known}"
            )
        if not check(value):
            raise TeacherFileError(
                f"{source}: {where}.{key} = {shown(value)} is not a valid value (see "
                "solo_sqsp/teachers/generator_kwargs.py for types and ranges)"
            )
