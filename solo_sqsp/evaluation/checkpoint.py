"""A frozen backbone from a pretraining checkpoint: what linear and k-NN evaluation start from.

The checkpoint is a Lightning ``.ckpt`` whose ``state_dict`` holds the backbone under
``backbone.*`` (our pretraining and solo-learn's both write that), or a plain state dict with those
keys. It is read with ``torch.load(weights_only=True)``, the way solo-learn's ``main_linear.py``
reads it under torch >= 2.6, so nothing in the file is executed.

The architecture comes from the checkpoint, not from the evaluation dataset (a CIFAR-pretrained
student evaluated on STL10, as in the paper's cross-dataset Table 9, keeps its CIFAR stem):
- ``backbone.name`` and ``backbone.kwargs``: the ``args.json`` written beside the checkpoint by the
  pretraining run (solo-learn's Checkpointer writes the same file); the evaluation config's
  ``backbone.name``, when both are given, must agree;
- the CIFAR stem: read off the weights (``conv1`` is 3x3 in the CIFAR stem, 7x7 otherwise).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from solo_sqsp.config import omegaconf_select
from solo_sqsp.data.transforms import eval_grayscale
from solo_sqsp.models.backbones import BACKBONES, build_backbone
from solo_sqsp.training.checkpoint_io import load_failure_reason
from solo_sqsp.untrusted.bounded_text import clipped, shown
from solo_sqsp.untrusted.pickle_scan import PickleScanError, scan_torch_file

BACKBONE_PREFIX = "backbone."
ARGS_FILE = "args.json"
LAST_CHECKPOINT = "last.ckpt"
CHECKPOINT_SUFFIXES = (".ckpt", ".pth", ".pt")
_SHOWN_KEYS = 4
MAX_ARGS_BYTES = 16 * 2**20  # args.json


def _flag(value: Any) -> bool:
    return isinstance(value, bool)


def _count(high: int) -> Any:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= high


BACKBONE_KWARGS = {  # the torchvision ResNet arguments a pretraining config may set, checked
    "zero_init_residual": _flag,
    "groups": _count(64),
    "width_per_group": _count(256),
    "replace_stride_with_dilation": lambda v: (
        isinstance(v, list) and len(v) == 3 and all(map(_flag, v))
    ),
}


class CheckpointError(ValueError):
    """The pretrained checkpoint is missing, unreadable, or does not fit the backbone."""


@dataclass(frozen=True)
class BackboneSpec:
    """How to rebuild the pretrained backbone: ``build_backbone(name, cifar_stem, **kwargs)``."""

    name: str
    cifar_stem: bool
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class PretrainedBackbone:
    """A frozen backbone (``eval()``, no gradients) with where it came from."""

    module: nn.Module
    features_dim: int
    spec: BackboneSpec
    checkpoint: Path
    pretrain_args: dict[str, Any] | None

    def check_input(self, cfg: DictConfig) -> None:
        """CheckpointError unless the evaluation reads images as the pretraining's evaluation
        did: ``data.eval_grayscale`` of ``cfg`` and of ``args.json`` (absent: False) agree."""
        data = (self.pretrain_args or {}).get("data") or {}
        trained = data.get("eval_grayscale", False) if isinstance(data, dict) else False
        asked = eval_grayscale(cfg)
        if trained != asked:
            raise CheckpointError(
                f"the checkpoint was pretrained with data.eval_grayscale={trained} "
                f"({ARGS_FILE}), the evaluation config has data.eval_grayscale={asked}: "
                f"set data.eval_grayscale={trained} so the backbone sees the images it was "
                "trained on"
            )

    def describe(self) -> str:
        """One line for the log: architecture and source."""
        stem = ", CIFAR stem" if self.spec.cifar_stem else ""
        method = (self.pretrain_args or {}).get("method")
        source = f" pretrained with '{method}'" if method else ""
        return (
            f"{self.spec.name}{stem} ({self.features_dim}-d features){source} <- {self.checkpoint}"
        )


def _shown(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > _SHOWN_KEYS else ""
    return ", ".join(clipped(key, 80) for key in keys[:_SHOWN_KEYS]) + more


def resolve_checkpoint_path(path: Any) -> Path:
    """``path`` itself when it is a file; for a pretraining run folder, its ``last.ckpt`` or its
    only checkpoint."""
    key = "pretrained_feature_extractor"
    if path is None or str(path) in ("", "None", "???"):
        raise CheckpointError(
            f"{key} is not set: pass {key}=PATH to a pretraining checkpoint (.ckpt) or to the "
            "run folder holding it"
        )
    checkpoint = Path(str(path)).expanduser()
    if checkpoint.is_file():
        return checkpoint
    if not checkpoint.exists():
        raise CheckpointError(
            f"{key}={str(path)!r} does not exist: pass the .ckpt written by main_pretrain.py "
            "(in <checkpoint.dir>/<method>/<name>-<id>/) or that folder"
        )
    if (checkpoint / LAST_CHECKPOINT).is_file():
        return checkpoint / LAST_CHECKPOINT
    found = sorted(p for p in checkpoint.iterdir() if p.suffix in CHECKPOINT_SUFFIXES)
    if len(found) == 1:
        return found[0]
    if not found:
        raise CheckpointError(f"{key}={str(path)!r} is a folder without a .ckpt/.pth/.pt file")
    raise CheckpointError(
        f"{key}={str(path)!r} holds several checkpoints ({_shown([p.name for p in found])}) and "
        f"no {LAST_CHECKPOINT}: pass one of them"
    )


def _refused_global(error: Exception) -> str | None:
    """The class or function torch's weights-only unpickler refused, if that was the error."""
    found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
    return found.group(1) if found else None


def read_state_dict(checkpoint: Path) -> dict[str, Tensor]:
    """The checkpoint's ``state_dict`` (or the file itself when it is a plain state dict), read
    with ``torch.load(weights_only=True)``."""
    try:
        scan_torch_file(checkpoint)
        content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except PickleScanError as error:
        raise CheckpointError(
            f"{checkpoint} is not a PyTorch checkpoint this library reads ({error}); pass the "
            ".ckpt written by main_pretrain.py"
        ) from error
    except Exception as error:  # arbitrary bytes make the unpickler fail in arbitrary ways
        refused = _refused_global(error)
        if refused is not None:
            raise CheckpointError(
                f"{checkpoint}: torch.load(weights_only=True) refuses it (it stores a {refused} "
                "object); solo-learn's main_linear.py loads checkpoints the same way. Fix the "
                "writer so the checkpoint holds only tensors and plain Python values"
            ) from error
        raise CheckpointError(
            f"{checkpoint} is not a PyTorch checkpoint (torch.load failed: "
            f"{load_failure_reason(error)}); pass the .ckpt written by main_pretrain.py"
        ) from error
    if isinstance(content, dict) and isinstance(content.get("state_dict"), dict):
        return content["state_dict"]
    if (
        isinstance(content, dict)
        and content
        and all(isinstance(v, Tensor) for v in content.values())
    ):
        return content
    kind = (
        f"a dict with keys {_shown(sorted(k if isinstance(k, str) else shown(k) for k in content))}"
        if isinstance(content, dict)
        else type(content).__name__
    )
    raise CheckpointError(
        f"{checkpoint} holds {kind}, not a Lightning checkpoint (a dict with 'state_dict') or a "
        "state dict of tensors"
    )


def backbone_weights(state_dict: dict[str, Tensor], checkpoint: Path) -> dict[str, Tensor]:
    """The ``backbone.*`` entries with the prefix removed (solo-learn's main_linear rule), checked
    to map names to tensors."""
    if not all(isinstance(key, str) for key in state_dict):
        raise CheckpointError(f"{checkpoint}: its state_dict has keys that are not names")
    weights = {
        key.removeprefix(BACKBONE_PREFIX): value
        for key, value in state_dict.items()
        if key.startswith(BACKBONE_PREFIX)
    }
    if not weights:
        prefixes = sorted({key.split(".", 1)[0] + "." for key in state_dict})
        raise CheckpointError(
            f"{checkpoint} has no backbone weights: no state_dict key starts with "
            f"'{BACKBONE_PREFIX}' (found {_shown(prefixes) or 'no keys'}); pass a checkpoint of a "
            "pretraining run"
        )
    not_tensors = sorted(key for key, value in weights.items() if not isinstance(value, Tensor))
    if not_tensors:
        raise CheckpointError(
            f"{checkpoint}: its backbone entries {_shown(not_tensors)} are not tensors"
        )
    return weights


def read_pretrain_args(checkpoint: Path) -> dict[str, Any] | None:
    """The pretraining config saved as ``args.json`` beside the checkpoint, if there is one."""
    args_path = checkpoint.parent / ARGS_FILE
    if not args_path.is_file():
        return None
    if args_path.stat().st_size > MAX_ARGS_BYTES:
        raise CheckpointError(
            f"{args_path} is larger than {MAX_ARGS_BYTES} bytes; delete or fix it"
        )
    try:
        args = json.loads(args_path.read_text())
    except (ValueError, RecursionError) as error:  # JSON and UTF-8 errors, nesting too deep
        raise CheckpointError(
            f"{args_path} is not valid JSON ({shown(error)}); delete or fix it"
        ) from error
    if not isinstance(args, dict):
        raise CheckpointError(f"{args_path} holds {type(args).__name__}, not a config mapping")
    return args


def backbone_spec(
    cfg: DictConfig, pretrain_args: dict[str, Any] | None, weights: dict[str, Tensor]
) -> BackboneSpec:
    """The pretrained architecture (module docstring); CheckpointError on any disagreement."""
    backbone = (pretrain_args or {}).get("backbone") or {}
    if not isinstance(backbone, dict):
        raise CheckpointError(f"{ARGS_FILE}: backbone is {shown(backbone)}, not a mapping")
    found = backbone.get("name")
    if found is not None and not isinstance(found, str):
        raise CheckpointError(f"{ARGS_FILE}: backbone.name is {shown(found)}, not a name")
    expected = omegaconf_select(cfg, "backbone.name")
    if found and expected and found != expected:
        raise CheckpointError(
            f"backbone name mismatch: the checkpoint's {ARGS_FILE} says {shown(found)}, the config "
            f"asks for backbone.name='{expected}'; set backbone.name={found} or pass a {expected} "
            "checkpoint"
        )
    name = found or expected
    if not name:
        raise CheckpointError(
            f"backbone.name is required: no {ARGS_FILE} beside the checkpoint names the "
            f"architecture; set backbone.name to one of {sorted(BACKBONES)}"
        )
    if name not in BACKBONES:
        raise CheckpointError(
            f"backbone {shown(name)} is not available; choose one of {sorted(BACKBONES)}"
        )

    conv1 = weights.get("conv1.weight")
    cifar_stem = conv1 is not None and conv1.ndim == 4 and tuple(conv1.shape[-2:]) == (3, 3)
    explicit = omegaconf_select(cfg, "backbone.cifar_stem")
    if explicit is not None and bool(explicit) != cifar_stem:
        shape = "x".join(map(str, conv1.shape[-2:])) if conv1 is not None else "no"
        raise CheckpointError(
            f"backbone.cifar_stem={explicit} but the checkpoint's conv1 is {shape} "
            f"(CIFAR stem: {cifar_stem}); drop backbone.cifar_stem, the checkpoint decides"
        )
    if pretrain_args is not None:
        kwargs = backbone.get("kwargs") or {}
    else:
        selected = omegaconf_select(cfg, "backbone.kwargs")
        kwargs = OmegaConf.to_container(selected) if selected else {}
    _check_backbone_kwargs(kwargs)
    return BackboneSpec(name=name, cifar_stem=cifar_stem, kwargs=dict(kwargs))


def _check_backbone_kwargs(kwargs: Any) -> None:
    """Known torchvision ResNet arguments only, each of its type and range."""
    if not isinstance(kwargs, dict):
        raise CheckpointError(f"backbone.kwargs is {shown(kwargs)}, not a mapping")
    for key, value in kwargs.items():
        check = BACKBONE_KWARGS.get(key) if isinstance(key, str) else None
        if check is None:
            raise CheckpointError(
                f"backbone.kwargs has the unknown key {shown(key)}; known keys are "
                f"{sorted(BACKBONE_KWARGS)}"
            )
        if not check(value):
            raise CheckpointError(f"backbone.kwargs.{key} = {shown(value)} is not a valid value")


def load_frozen_backbone(cfg: DictConfig) -> PretrainedBackbone:
    """The backbone of ``cfg.pretrained_feature_extractor``, loaded strictly, in ``eval()`` mode
    with ``requires_grad=False``. Every failure is a one-line CheckpointError."""
    checkpoint = resolve_checkpoint_path(omegaconf_select(cfg, "pretrained_feature_extractor"))
    weights = backbone_weights(read_state_dict(checkpoint), checkpoint)
    pretrain_args = read_pretrain_args(checkpoint)
    spec = backbone_spec(cfg, pretrain_args, weights)
    try:
        with torch.device("meta"):  # nothing is allocated before the weights are known to fit
            module, features_dim = build_backbone(
                spec.name, cifar_stem=spec.cifar_stem, **spec.kwargs
            )
    except (TypeError, ValueError, NotImplementedError) as error:
        raise CheckpointError(
            f"{spec.name} cannot be built with backbone.kwargs {shown(spec.kwargs)}: {shown(error)}"
        ) from error
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    misshapen = sorted(k for k in set(own) & set(weights) if own[k].shape != weights[k].shape)
    if missing or unexpected or misshapen:
        problems = [
            f"{label} {_shown(keys)}"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("wrong shape", misshapen),
            )
            if keys
        ]
        raise CheckpointError(
            f"{checkpoint}: its backbone weights do not fit {spec.name} "
            f"(cifar_stem={spec.cifar_stem}): {'; '.join(problems)}; check backbone.name"
        )
    module = module.to_empty(device="cpu")
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as error:  # e.g. a dtype that does not convert
        raise CheckpointError(
            f"{checkpoint}: its backbone weights do not load ({shown(error)})"
        ) from error
    module.requires_grad_(False)
    module.eval()
    return PretrainedBackbone(module, features_dim, spec, checkpoint, pretrain_args)
