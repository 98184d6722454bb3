"""Projection heads: solo-learn's, or those of the paper's reference code.

``method_kwargs.head``: ``solo`` (default of ``vicreg``, ``simsiam``) or ``authors`` (default of
``sqsp``, the paper's student, Sec. 4), for the builtin methods and solo-learn's alike
(``install_heads``). Layer layouts and inherited ``proj_layers``: docs/architecture.md.
"""

from __future__ import annotations

import omegaconf
from torch import nn

from solo_sqsp.config import omegaconf_select, set_method_defaults
from solo_sqsp.models.projector import build_projector

HEADS = ("solo", "authors")
DEFAULT_HEADS = {"vicreg": "solo", "simsiam": "solo", "sqsp": "authors"}
AUTHORS_PROJ_LAYERS = {"vicreg": 5, "simsiam": 2, "sqsp": 5}
# solo-learn's CIFAR widths, defaults on both bases (solo-learn's methods assert them, and build
# their own heads from them before ``install_heads`` swaps in the authors' ones).
HEAD_WIDTHS = {
    "vicreg": {"proj_hidden_dim": 2048, "proj_output_dim": 2048},
    "simsiam": {"proj_hidden_dim": 2048, "proj_output_dim": 2048, "pred_hidden_dim": 512},
    "sqsp": {"proj_hidden_dim": 2048, "proj_output_dim": 2048},
}


def head_choice(cfg: omegaconf.DictConfig, method: str) -> str:
    """``method_kwargs.head`` checked (``DEFAULT_HEADS`` of ``method`` when unset), ``HEAD_WIDTHS``
    of ``method`` where unset; with ``authors``, the default ``method_kwargs.proj_layers`` of
    ``method`` where unset."""
    head = omegaconf_select(cfg, "method_kwargs.head", DEFAULT_HEADS.get(method, "solo"))
    if head not in HEADS:
        raise ValueError(f"method_kwargs.head={head!r}: choose one of {HEADS}")
    if head != "solo" and method not in AUTHORS_PROJ_LAYERS:
        raise ValueError(
            f"method_kwargs.head={head!r} applies to {sorted(AUTHORS_PROJ_LAYERS)}, not to "
            f"method={method!r}: remove the key"
        )
    omegaconf.OmegaConf.update(cfg, "method_kwargs.head", head, force_add=True)
    set_method_defaults(cfg, HEAD_WIDTHS.get(method, {}))
    if head == "authors":
        layers = omegaconf_select(cfg, "method_kwargs.proj_layers", AUTHORS_PROJ_LAYERS[method])
        omegaconf.OmegaConf.update(cfg, "method_kwargs.proj_layers", layers, force_add=True)
    return head


def vicreg_projector(head: str, features_dim: int, kwargs: omegaconf.DictConfig) -> nn.Sequential:
    """VICReg's projector, also the ``sqsp`` student's: solo-learn's 3-layer MLP or the reference
    code's (layouts: docs/architecture.md)."""
    if head == "authors":
        return build_projector(features_dim, kwargs.proj_output_dim, num_layers=kwargs.proj_layers)
    hidden, out = kwargs.proj_hidden_dim, kwargs.proj_output_dim
    return nn.Sequential(
        nn.Linear(features_dim, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, hidden),
        nn.BatchNorm1d(hidden),
        nn.ReLU(),
        nn.Linear(hidden, out),
    )


def simsiam_heads(
    head: str, features_dim: int, kwargs: omegaconf.DictConfig
) -> tuple[nn.Sequential, nn.Sequential]:
    """SimSiam's ``(projector, predictor)``: solo-learn's or the reference code's projector
    (docs/architecture.md), ending in ``BN(affine=False)``; the same predictor for both."""
    out, pred = kwargs.proj_output_dim, kwargs.pred_hidden_dim
    if head == "authors":
        projector = build_projector(features_dim, out, num_layers=kwargs.proj_layers)
    else:
        hidden = kwargs.proj_hidden_dim
        projector = nn.Sequential(
            nn.Linear(features_dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, out, bias=False),
        )
    projector.append(nn.BatchNorm1d(out, affine=False))
    predictor = nn.Sequential(
        nn.Linear(out, pred, bias=False),
        nn.BatchNorm1d(pred),
        nn.ReLU(),
        nn.Linear(pred, out),
    )
    return projector, predictor


def install_heads(method: nn.Module, cfg: omegaconf.DictConfig) -> None:
    """Give a constructed ``vicreg`` or ``simsiam`` (solo-learn's, which builds its own heads) the
    heads ``method_kwargs.head`` names; nothing to do for ``solo`` or another method."""
    if cfg.method_kwargs.head == "solo" or cfg.method not in ("vicreg", "simsiam"):
        return
    if cfg.method == "vicreg":
        method.projector = vicreg_projector(
            cfg.method_kwargs.head, method.features_dim, cfg.method_kwargs
        )
    else:
        method.projector, method.predictor = simsiam_heads(
            cfg.method_kwargs.head, method.features_dim, cfg.method_kwargs
        )
