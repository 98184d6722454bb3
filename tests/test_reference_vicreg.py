"""The plain-PyTorch reference loop's SimSiam control (``benchmarks/reference_vicreg.py``)."""

from __future__ import annotations

import torch

from solo_sqsp.config_lookup import REPO_ROOT


def test_simsiam_is_minus_one_when_predictions_align_and_stops_the_targets_gradient(
    monkeypatch,
) -> None:
    """Chen & He 2021, Eq. 2-4: -1 for predictions along the other view's projection, whatever
    their norm; the projections get no gradient from the loss, the predictions do."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    from reference_vicreg import simsiam

    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(8, 16, generator=g).requires_grad_()
    z2 = torch.randn(8, 16, generator=g).requires_grad_()
    p1, p2 = (3 * z2.detach()).requires_grad_(), (0.5 * z1.detach()).requires_grad_()
    loss = simsiam(p1, p2, z1, z2)
    assert torch.isclose(loss, torch.tensor(-1.0))
    p1_off = torch.randn(8, 16, generator=g).requires_grad_()
    off = simsiam(p1_off, p2, z1, z2)
    assert off > loss
    off.backward()
    assert z1.grad is None and z2.grad is None
    assert p1_off.grad is not None and p1_off.grad.abs().sum() > 0
