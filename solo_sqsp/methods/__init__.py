"""Methods: ``sqsp`` on solo-learn's ``BaseMethod`` when importable, else on the builtin base."""

from solo_sqsp.methods.base import ACTIVE_BASE, METHODS, BaseMethod, get_method, register_method
from solo_sqsp.methods.sqsp import SqueezeAndSpan

register_method("sqsp", SqueezeAndSpan)

__all__ = [
    "ACTIVE_BASE",
    "METHODS",
    "BaseMethod",
    "SqueezeAndSpan",
    "get_method",
    "register_method",
]
