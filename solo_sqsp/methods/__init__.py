"""Methods on solo-learn's ``BaseMethod`` when importable, else on the builtin base.

``sqsp`` is ours on either base. ``vicreg`` and ``simsiam`` are solo-learn's own methods when
solo-learn is active (``get_method`` gives any solo-learn method) and the builtin equivalents
otherwise; every two-view method takes ``method_kwargs.synthetic.domain: real|syn|mix``
(``solo_sqsp.methods.domains``, Table 2).
"""

from solo_sqsp.methods.base import (
    ACTIVE_BASE,
    METHODS,
    SOLO_METHODS,
    BaseMethod,
    get_method,
    register_method,
)
from solo_sqsp.methods.domains import DOMAINS, with_domain
from solo_sqsp.methods.simsiam import SimSiam
from solo_sqsp.methods.sqsp import SqueezeAndSpan
from solo_sqsp.methods.vicreg import VICReg

register_method("sqsp", SqueezeAndSpan)
if SOLO_METHODS is None:  # with solo-learn, get_method serves its own vicreg and simsiam
    register_method("vicreg", with_domain(VICReg))
    register_method("simsiam", with_domain(SimSiam))

__all__ = [
    "ACTIVE_BASE",
    "DOMAINS",
    "METHODS",
    "BaseMethod",
    "SimSiam",
    "SqueezeAndSpan",
    "VICReg",
    "get_method",
    "register_method",
    "with_domain",
]
