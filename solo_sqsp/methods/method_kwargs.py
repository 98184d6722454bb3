"""Which ``method_kwargs`` keys a run reads, checked before any model or run folder exists.

A key that none of this project's methods reads (a typo such as ``sim_los_weight``) is a
ConfigError listing the keys the method reads. A key another method reads but this run does not
(the squeeze keys a ``vicreg`` row inherits from ``sqsp_<dataset>.yaml``, a teacher on the
``real`` domain) is named in a warning, so nothing is accepted silently. ``synthetic.*`` is
checked by ``synthetic_sources.synthetic_settings``; ``synthetic_augmentation`` is an
augmentation spec. Methods served by solo-learn alone (``byol``, ...) are not checked.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from solo_sqsp.config import ConfigError, omegaconf_select
from solo_sqsp.methods.heads import HEAD_WIDTHS
from solo_sqsp.methods.sqsp import SQSP_DEFAULTS
from solo_sqsp.methods.synthetic_feed import FEED_DEFAULTS
from solo_sqsp.methods.vicreg import VICREG_WEIGHTS

logger = logging.getLogger(__name__)

CHECKED_ELSEWHERE = ("synthetic", "synthetic_augmentation")
FEED_KEYS = frozenset(
    {*FEED_DEFAULTS, "teacher.path", "teacher.allow_upsampling"} - {"synthetic_augmentation"}
)
DOMAIN_KEYS = frozenset({"syn_ratio"})


def _head_keys(method: str) -> frozenset[str]:
    return frozenset({"head", "proj_layers", *HEAD_WIDTHS[method]})


def read_keys(method: str, domain: str) -> frozenset[str] | None:
    """The dotted ``method_kwargs`` keys ``method`` reads on ``domain``; None when unknown."""
    domain_keys = DOMAIN_KEYS | (FEED_KEYS if domain != "real" else frozenset())
    if method == "sqsp":
        return frozenset(SQSP_DEFAULTS) | FEED_KEYS
    if method == "vicreg":
        return frozenset(VICREG_WEIGHTS) | _head_keys("vicreg") | domain_keys
    if method == "simsiam":
        return _head_keys("simsiam") | domain_keys
    return None


def leaf_keys(kwargs: DictConfig) -> list[str]:
    """Dotted keys of the leaves of ``kwargs``, not descending into ``CHECKED_ELSEWHERE``."""
    container = OmegaConf.to_container(kwargs, resolve=False)

    def walk(node: dict, prefix: str) -> list[str]:
        keys = []
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict) and value and dotted not in CHECKED_ELSEWHERE:
                keys += walk(value, f"{dotted}.")
            else:
                keys.append(dotted)
        return keys

    return walk(container, "") if isinstance(container, dict) else []


def check_method_kwargs(cfg: DictConfig) -> None:
    """ConfigError for a ``method_kwargs`` key no method reads; a warning naming the keys this
    run's method does not read (module docstring)."""
    method = str(omegaconf_select(cfg, "method", ""))
    domain = str(omegaconf_select(cfg, "method_kwargs.synthetic.domain", "real"))
    reads = read_keys(method, domain)
    kwargs = omegaconf_select(cfg, "method_kwargs", None)
    if reads is None or not isinstance(kwargs, DictConfig):
        return
    anyone_reads = frozenset().union(
        *(read_keys(name, "mix") for name in ("sqsp", "vicreg", "simsiam"))
    )
    given = [key for key in leaf_keys(kwargs) if key not in CHECKED_ELSEWHERE]
    unknown = [key for key in given if key not in anyone_reads]
    if unknown:
        raise ConfigError(
            f"method_kwargs: unknown key(s) {unknown} for method={method!r}; it reads "
            f"{sorted(reads | set(CHECKED_ELSEWHERE))}"
        )
    unread = list(dict.fromkeys(key.split(".")[0] for key in given if key not in reads))
    if unread:
        logger.warning(
            "method_kwargs %s are not read by method=%s on domain %s (inherited from a shared "
            "config?); they have no effect",
            unread,
            method,
            domain,
        )
