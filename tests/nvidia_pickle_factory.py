"""Test helper: network pickles with the structure of NVIDIA's StyleGAN2-ADA pickles, written from
our own modules without NVIDIA's code.

What NVIDIA's ``training_loop.py`` writes (checked with ``pickletools.dis`` against pickles made
by NVIDIA's own code): ``pickle.dump`` of a dict ``training_set_kwargs, G, D, G_ema,
augment_pipe`` whose networks are eval-mode copies without gradients. Each module pickles as
``torch_utils.persistence._reconstruct_persistent_obj(meta)``, ``meta = {type: 'class', version:
6, module_src, class_name, state}``, ``state`` being the module's ``__dict__`` plus ``_init_args``
and ``_init_kwargs`` (nested kwargs as ``dnnlib.util.EasyDict``); tensors pickle through torch's
own reducers (``_rebuild_parameter``, ``_rebuild_tensor_v2``, ``storage._load_from_bytes``);
``weight_gain`` and ``act_gain`` attributes are numpy float64 (NVIDIA computes them with
``np.sqrt``).

Pickle writes a function or class by reference only after importing it under its
``__module__``: the stand-ins below are registered under NVIDIA's module names in
``sys.modules`` for the duration of one ``dumps`` call.
"""

from __future__ import annotations

import copy
import io
import pickle
import sys
import types
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
from torch import nn

from solo_sqsp.teachers import stylegan2

PERSISTENCE_VERSION = 6
PLACEHOLDER_MODULE_SRC = "# training/networks.py of the network that wrote this pickle\n"
MODULE_INTERNALS = frozenset(vars(nn.Module()))  # training, _parameters, _buffers, _modules, hooks
PLAIN_TYPES = (bool, int, float, str, type(None), list, tuple, dict)
NUMPY_FLOAT_ATTRIBUTES = frozenset({"weight_gain", "act_gain"})


class EasyDict(dict):
    """Stand-in for ``dnnlib.util.EasyDict`` (pickled by reference: NEWOBJ + SETITEMS)."""


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> None:
    """Stand-in for ``torch_utils.persistence._reconstruct_persistent_obj``, pickled by
    reference only; unpickling factory output needs NVIDIA's code or our loader."""
    raise RuntimeError("stand-in for NVIDIA's function: it is pickled, never called")


def _numpy_scalar(dtype: np.dtype, data: bytes) -> None:
    """Stand-in for ``numpy.core.multiarray.scalar``, the name numpy 1.x (Python 3.7-era
    pickles) writes; numpy 2 writes ``numpy._core.multiarray.scalar``."""
    raise RuntimeError("stand-in for numpy 1.x's function: it is pickled, never called")


_STAND_INS = {
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("dnnlib.util", "EasyDict"): EasyDict,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
}
for (_module_name, _attribute), _stand_in in _STAND_INS.items():
    _stand_in.__module__, _stand_in.__qualname__ = _module_name, _attribute


class Discriminator(nn.Module):
    """Stand-in with the record shape of NVIDIA's ``Discriminator``: class name, init kwargs,
    nested layer records with parameters and buffers. Loaders keep D as data, so it needs no
    forward."""

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int) -> None:
        super().__init__()
        self.init_kwargs = dict(
            c_dim=c_dim, img_resolution=img_resolution, img_channels=img_channels
        )
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.fromrgb = stylegan2.Conv2dLayer(img_channels, 8, kernel_size=1, activation="lrelu")
        self.out = stylegan2.FullyConnectedLayer(8 * 4 * 4, max(c_dim, 1))


def nvidia_network_pickle(
    G_ema: nn.Module,
    *,
    G: nn.Module | None = None,
    D: nn.Module | None = None,
    augment_pipe: nn.Module | None = None,
    training_set_kwargs: Mapping[str, Any] | None = None,
    protocol: int = 4,
    module_src: str = PLACEHOLDER_MODULE_SRC,
    version: int = PERSISTENCE_VERSION,
) -> bytes:
    """An NVIDIA-structured network pickle of ``G_ema`` (``G`` defaults to a copy of it, ``D``
    to a ``Discriminator`` stand-in matching its ``c_dim`` and resolution). Protocol 3 writes
    what Python 3.7 / numpy 1.x wrote (``GLOBAL`` opcodes, ``builtins.set``,
    ``numpy.core.multiarray.scalar``), protocol 4 what Python 3.8+ / numpy 2 writes."""
    if D is None:
        D = Discriminator(G_ema.c_dim, G_ema.img_resolution, G_ema.img_channels)
    snapshot = {
        "training_set_kwargs": None if training_set_kwargs is None else dict(training_set_kwargs)
    }
    for name, module in (
        ("G", G if G is not None else G_ema),
        ("D", D),
        ("G_ema", G_ema),
        ("augment_pipe", augment_pipe),
    ):
        snapshot[name] = (
            None if module is None else copy.deepcopy(module).eval().requires_grad_(False)
        )
    stream = io.BytesIO()
    with _nvidia_module_names():
        _NvidiaPickler(stream, protocol, module_src, version).dump(snapshot)
    return stream.getvalue()


class _NvidiaPickler(pickle.Pickler):
    """Writes every ``nn.Module`` as a persistence record and numpy float64 as numpy's scalar
    reduction; everything else pickles as usual."""

    def __init__(self, stream: io.BytesIO, protocol: int, module_src: str, version: int) -> None:
        super().__init__(stream, protocol=protocol)
        self.protocol = protocol
        self.module_src = module_src
        self.version = version

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, nn.Module):
            return _reconstruct_persistent_obj, (self._record_meta(obj),)
        if isinstance(obj, np.float64) and self.protocol < 4:
            return _numpy_scalar, (obj.dtype, obj.tobytes())
        return NotImplemented

    def _record_meta(self, module: nn.Module) -> dict[str, Any]:
        state = {}
        for name, value in vars(module).items():
            if name in MODULE_INTERNALS:
                state[name] = value
            elif not name.startswith("_") and name != "init_kwargs" and _is_plain(value):
                numpy_float = name in NUMPY_FLOAT_ATTRIBUTES and isinstance(value, float)
                state[name] = np.float64(value) if numpy_float else value
        init_kwargs = getattr(module, "init_kwargs", {})
        state["_init_args"] = ()
        state["_init_kwargs"] = {
            key: EasyDict(value) if isinstance(value, Mapping) else value
            for key, value in init_kwargs.items()
        }
        return {
            "type": "class",
            "version": self.version,
            "module_src": self.module_src,
            "class_name": type(module).__name__,
            "state": state,
        }


def _is_plain(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(map(_is_plain, value))
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return isinstance(value, PLAIN_TYPES)


@contextmanager
def _nvidia_module_names() -> Iterator[None]:
    """Registers the stand-ins under NVIDIA's (and numpy 1.x's) module names in ``sys.modules``,
    with empty parent packages where none is loaded (pickle imports the top-level package too),
    and restores ``sys.modules`` afterwards."""
    saved: dict[str, types.ModuleType | None] = {}
    for (module_name, attribute), stand_in in _STAND_INS.items():
        parts = module_name.split(".")
        for depth in range(1, len(parts)):
            parent = ".".join(parts[:depth])
            if parent not in sys.modules:
                saved[parent] = None
                sys.modules[parent] = types.ModuleType(parent)
        module = types.ModuleType(module_name)
        setattr(module, attribute, stand_in)
        saved[module_name] = sys.modules.get(module_name)
        sys.modules[module_name] = module
    try:
        yield
    finally:
        for module_name, previous in saved.items():
            if previous is None:
                del sys.modules[module_name]
            else:
                sys.modules[module_name] = previous
