"""The Squeeze-and-Span losses: Squeeze (Eq. 11) and ``a L_syn + (1 - a) L_real`` (Sec. 4.2)."""

from torch import Tensor

from solo_sqsp.losses.vicreg import LossTerms, LossWeights, regularized_loss


def squeeze_loss(
    h: Tensor,
    z: Tensor,
    weights: LossWeights,
    regularize_teacher: bool = False,
) -> LossTerms:
    """Squeeze loss (Eq. 11): ``w_sim*MSE(h, z) + w_var*v(z) + w_cov*c(z)``.

    ``h``: squeezed teacher representation; ``z``: student projector output, same shape. The
    reference code regularises the student only; ``regularize_teacher`` adds ``v(h)`` and ``c(h)``
    as the terms ``syn/var_teacher`` and ``syn/cov_teacher``.
    """
    regularized = {"": [z], "_teacher": [h]} if regularize_teacher else {"": [z]}
    return regularized_loss((h, z), regularized, weights, prefix="syn")


def sqsp_total(l_syn: LossTerms, l_real: LossTerms | None, syn_ratio: float) -> LossTerms:
    """Squeeze-and-Span loss ``a * L_syn + (1 - a) * L_real``, ``a = syn_ratio`` (Sec. 4.2).

    ``syn_ratio = 1`` is "Squeeze" only: ``l_real`` is ignored and may be None. The terms of both
    parts are kept, plus each part's total as ``syn/total`` and ``real/total``.
    """
    if not 0 < syn_ratio <= 1:
        raise ValueError(
            f"syn_ratio is the synthetic share of the batch and must be in (0, 1], got "
            f"{syn_ratio}; for real data only, train the vicreg method instead."
        )
    terms = {**l_syn.terms, "syn/total": l_syn.total}
    if syn_ratio == 1:
        return LossTerms(total=l_syn.total, terms=terms)
    if l_real is None:
        raise ValueError(
            f"syn_ratio={syn_ratio} < 1 mixes in real data, but no real-data loss was given."
        )
    terms.update({**l_real.terms, "real/total": l_real.total})
    return LossTerms(total=syn_ratio * l_syn.total + (1 - syn_ratio) * l_real.total, terms=terms)
