"""solo-sqsp: Squeeze-and-Span (Yang et al., NeurIPS 2022) for solo-learn."""

__version__ = "0.1.0"
