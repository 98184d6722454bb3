"""solo-sqsp: Squeeze-and-Span (Yang et al., NeurIPS 2022) for solo-learn.

Importing the package registers the ``sqsp`` method, in solo-learn's ``solo.methods.METHODS`` too
when solo-learn is importable (``solo_sqsp.methods.ACTIVE_BASE`` says which base is active).
"""

from solo_sqsp.methods import ACTIVE_BASE

__version__ = "0.1.0"
__all__ = ["ACTIVE_BASE", "__version__"]
