"""Which ``method_kwargs`` keys a run reads, checked before any model or run folder exists.

A key that none of this project's methods reads (a typo such as ``sim_los_weight``) is a
ConfigError listing the keys the method reads. A key another method reads but this run does not
(the squeeze keys a ``vicreg`` row inherits from ``sqsp_<dataset>.yaml``, a teacher on the
``real`` domain) is named in a warning, so nothing is accepted silently. ``synthetic.*`` is
checked by ``synthetic.sources.synthetic_settings``; ``synthetic_augmentation`` is an
augmentation spec. Methods served by solo-learn alone (``byol``, ...) are not checked.
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig, OmegaConf

from solo_sqsp.config import ConfigError, omegaconf_select
from solo_sqsp.losses import LOSS_WEIGHT_DEFAULTS
from solo_sqsp.methods.sqsp import SQSP_DEFAULTS
from solo_sqsp.methods.synthetic_feed import FEED_DEFAULTS
from solo_sqsp.models.heads import HEAD_WIDTHS

logger = logging.getLogger(__name__)

CHECKED_ELSEWHERE = ("synthetic", "synthetic_augmentation")
FEED_KEYS = frozenset(
    {*FEED_DEFAULTS, "teacher.path", "teacher.allow_upsampling"} - {"synthetic_augmentation"}
)
DOMAIN_KEYS = frozenset({"syn_ratio"})


def _head_keys(method: str) -> frozenset[str]:
    return frozenset({"head", "proj_layers", *HEAD_WIDTHS[method]})


# What each checked method reads whatever its domain; the two-view methods (``with_domain``) add
# ``DOMAIN_KEYS``, and ``FEED_KEYS`` off the ``real`` domain.
METHOD_KEYS: dict[str, frozenset[str]] = {
    "sqsp": frozenset(SQSP_DEFAULTS) | FEED_KEYS | _head_keys("sqsp"),
    "vicreg": frozenset(LOSS_WEIGHT_DEFAULTS) | _head_keys("vicreg"),
    "simsiam": _head_keys("simsiam"),
}
TWO_VIEW_METHODS = ("vicreg", "simsiam")
ANY_METHOD_KEYS = frozenset().union(*METHOD_KEYS.values(), DOMAIN_KEYS, FEED_KEYS)


def read_keys(method: str, domain: str) -> frozenset[str] | None:
    """The dotted ``method_kwargs`` keys ``method`` reads on ``domain``; None when unknown."""
    if method not in METHOD_KEYS:
        return None
    if method not in TWO_VIEW_METHODS:
        return METHOD_KEYS[method]
    return METHOD_KEYS[method] | DOMAIN_KEYS | (FEED_KEYS if domain != "real" else frozenset())


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
    given = [key for key in leaf_keys(kwargs) if key not in CHECKED_ELSEWHERE]
    unknown = [key for key in given if key not in ANY_METHOD_KEYS]
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
