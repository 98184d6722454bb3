"""VICReg terms, squeeze / span / total losses (Eqs. 9-12) and the all-gather they rely on."""

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from small_generator import small_generator
from torch import nn

from solo_sqsp.losses import (
    LossWeights,
    covariance_loss,
    invariance_loss,
    sqsp_total,
    squeeze_loss,
    variance_loss,
    vicreg_loss,
)
from solo_sqsp.losses.distributed import gather
from solo_sqsp.models.projector import build_projector
from solo_sqsp.models.squeeze import SqueezeModule
from solo_sqsp.teachers.adapter import GeneratorTeacher

# Two perfectly correlated dims: variance 2 each (std > 1, var term 0), covariance 2.
CORRELATED = torch.tensor([[1.0, 1.0], [-1.0, -1.0]])
PAPER = LossWeights()


# --- single terms, by hand -------------------------------------------------------------------


def test_invariance_is_mean_squared_error():
    assert invariance_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 3.0]])).item() == 5.0


def test_variance_of_a_constant_batch_is_one_minus_sqrt_eps():
    # Var = 0 in every dim -> std = sqrt(1e-4) = 0.01 -> relu(1 - 0.01) = 0.99.
    assert variance_loss(torch.full((4, 3), 7.0)).item() == pytest.approx(0.99)


def test_variance_hinge_per_dimension():
    # dim 0: [-1, 1], unbiased Var 2 -> std > 1 -> 0; dim 1: [0, 0.5], Var 0.125.
    z = torch.tensor([[-1.0, 0.0], [1.0, 0.5]])
    assert variance_loss(z).item() == pytest.approx((1 - math.sqrt(0.125 + 1e-4)) / 2)


def test_covariance_sums_squared_off_diagonal_over_dims():
    assert covariance_loss(CORRELATED).item() == pytest.approx(8 / 2)
    # cov = [[2, 4, 0], [4, 8, 0], [0, 0, 0]]: off-diagonal squares 16 + 16, D = 3.
    assert covariance_loss(torch.tensor([[1.0, 2.0, 0.0], [-1.0, -2.0, 0.0]])).item() == (
        pytest.approx(32 / 3)
    )
    independent = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert covariance_loss(independent).item() == 0.0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="same shape"):
        invariance_loss(torch.zeros(4, 8), torch.zeros(4, 6))
    with pytest.raises(ValueError, match=r"variance_loss needs an \(N, D\) batch"):
        variance_loss(torch.zeros(4))
    with pytest.raises(ValueError, match="at least 2 samples"):
        covariance_loss(torch.zeros(1, 4))


# --- composed losses -------------------------------------------------------------------------


def test_squeeze_loss_regularises_the_student_only_by_default():
    h, z = torch.zeros(2, 2), CORRELATED
    terms = squeeze_loss(h, z, PAPER)
    assert list(terms.terms) == ["syn/sim", "syn/var", "syn/cov"]
    # sim = mean(z^2) = 1, v(z) = 0, c(z) = 4.
    assert terms.total.item() == pytest.approx(25 * 1 + 25 * 0 + 1 * 4)

    both = squeeze_loss(h, z, PAPER, regularize_teacher=True)
    names = ["syn/sim", "syn/var", "syn/var_teacher", "syn/cov", "syn/cov_teacher"]
    assert list(both.terms) == names
    # v(h) = 0.99 (constant h), c(h) = 0.
    assert both.terms["syn/var_teacher"].item() == pytest.approx(0.99)
    assert both.total.item() == pytest.approx(29 + 25 * 0.99)


def test_vicreg_loss_regularises_both_views():
    terms = vicreg_loss(CORRELATED, torch.zeros(2, 2), LossWeights(sim=2.0, var=3.0, cov=0.5))
    assert list(terms.terms) == ["real/sim", "real/var", "real/cov"]
    assert terms.terms["real/var"].item() == pytest.approx(0 + 0.99)
    assert terms.terms["real/cov"].item() == pytest.approx(4 + 0)
    assert terms.total.item() == pytest.approx(2 * 1 + 3 * 0.99 + 0.5 * 4)


def test_zero_weight_skips_the_term_entirely():
    # One sample has no variance: computing v or c would raise, so this passes only if skipped.
    h, z = torch.zeros(1, 3), torch.ones(1, 3)
    terms = squeeze_loss(h, z, LossWeights(sim=25.0, var=0.0, cov=0.0))
    assert list(terms.terms) == ["syn/sim"]
    assert terms.total.item() == pytest.approx(25.0)
    with pytest.raises(ValueError, match="at least 2 samples"):
        squeeze_loss(h, z, LossWeights(sim=25.0, var=0.0, cov=1.0))
    only_reg = squeeze_loss(torch.zeros(2, 2), CORRELATED, LossWeights(sim=0.0, var=1.0, cov=0.0))
    assert list(only_reg.terms) == ["syn/var"]


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({"sim": -1.0}, "sim must be finite and >= 0"),
        ({"cov": math.nan}, "cov must be finite"),
        ({"sim": 0.0, "var": 0.0, "cov": 0.0}, "All loss weights are 0"),
    ],
)
def test_bad_weights_are_named(weights, message):
    with pytest.raises(ValueError, match=message):
        LossWeights(**weights)


def test_sqsp_total_mixes_by_syn_ratio():
    l_syn = squeeze_loss(torch.zeros(2, 2), CORRELATED, PAPER)  # 29
    l_real = vicreg_loss(CORRELATED, torch.zeros(2, 2), PAPER)  # 25 + 24.75 + 4
    mixed = sqsp_total(l_syn, l_real, syn_ratio=0.25)
    assert mixed.total.item() == pytest.approx(0.25 * 29 + 0.75 * 53.75)
    assert list(mixed.terms) == [
        *["syn/sim", "syn/var", "syn/cov", "syn/total"],
        *["real/sim", "real/var", "real/cov", "real/total"],
    ]
    squeeze_only = sqsp_total(l_syn, None, syn_ratio=1.0)
    assert squeeze_only.total is l_syn.total
    assert "real/total" not in sqsp_total(l_syn, l_real, syn_ratio=1.0).terms
    with pytest.raises(ValueError, match="no real-data loss"):
        sqsp_total(l_syn, None, syn_ratio=0.5)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=r"syn_ratio .* must be in \(0, 1\]"):
            sqsp_total(l_syn, l_real, syn_ratio=bad)


def test_first_nonfinite_names_the_term():
    assert squeeze_loss(torch.zeros(2, 2), CORRELATED, PAPER).first_nonfinite() is None
    # Var overflows to inf (hinge -> 0, finite); the covariance entries overflow to inf.
    huge = CORRELATED * 1e20
    assert squeeze_loss(huge, huge, PAPER).first_nonfinite() == "syn/cov"
    h = torch.tensor([[math.inf, 0.0], [0.0, 0.0]])
    assert squeeze_loss(h, CORRELATED, PAPER).first_nonfinite() == "syn/sim"
    # Every term finite, only the weighted sum overflows.
    overflow = squeeze_loss(torch.zeros(2, 2), 2 * CORRELATED, LossWeights(sim=1e38, var=0, cov=0))
    assert overflow.first_nonfinite() == "total"
    nan_real = vicreg_loss(CORRELATED, torch.tensor([[0.0, math.nan], [0.0, 0.0]]), PAPER)
    l_syn = squeeze_loss(torch.zeros(2, 2), CORRELATED, PAPER)
    assert sqsp_total(l_syn, nan_real, 0.5).first_nonfinite() == "real/sim"


def test_log_dict_is_detached():
    z = CORRELATED.clone().requires_grad_()
    logged = squeeze_loss(torch.zeros(2, 2), z, PAPER).log_dict()
    assert list(logged) == ["loss", "syn/sim", "syn/var", "syn/cov"]
    assert not any(v.requires_grad for v in logged.values())


# --- gradients -------------------------------------------------------------------------------


class FrozenFourierGenerator(nn.Module):
    """A fast frozen teacher for training runs: latent -> 'image' and two random-Fourier
    'block' features, under no_grad like the real teacher."""

    def __init__(self, g: torch.Generator, latent_dim=4, image_dim=8, feature_dims=(16, 24)):
        super().__init__()
        self.to_image = nn.Parameter(torch.randn(latent_dim, image_dim, generator=g))
        self.freqs = nn.ParameterList(
            2 * torch.randn(latent_dim, d, generator=g) for d in feature_dims
        )
        self.phases = nn.ParameterList(
            2 * math.pi * torch.rand(d, generator=g) for d in feature_dims
        )
        self.requires_grad_(False).eval()

    @torch.no_grad()
    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        image = torch.tanh(latent @ self.to_image)
        features = [torch.cos(latent @ w + b) for w, b in zip(self.freqs, self.phases, strict=True)]
        return image, features


def test_gradients_reach_student_and_squeeze_never_the_generator():
    generator = small_generator(resolution=16)
    teacher = GeneratorTeacher(generator)
    # Even a generator whose parameters would accept gradients gets none through the losses.
    generator.requires_grad_(True)
    student = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        build_projector(8, out_dim=12, num_layers=2),
    )
    squeeze = SqueezeModule(teacher.feature_dims, hidden_dim=12, out_dim=12, depth=3)
    g = torch.Generator().manual_seed(0)
    sample = teacher.sample(8, g)
    real1, real2 = torch.randn(2, 8, 3, 16, 16, generator=g)
    l_syn = squeeze_loss(squeeze(sample.features), student(sample.images), PAPER)
    l_real = vicreg_loss(student(real1), student(real2), PAPER)
    sqsp_total(l_syn, l_real, syn_ratio=0.5).total.backward()
    for module in (student, squeeze):
        for name, p in module.named_parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(p.grad is None for p in generator.parameters())


def test_regularisers_on_the_student_leave_the_squeeze_module_to_the_sim_term():
    g = torch.Generator().manual_seed(1)
    h = torch.randn(6, 4, generator=g).requires_grad_()
    z = torch.randn(6, 4, generator=g).requires_grad_()
    squeeze_loss(h, z, LossWeights(sim=0.0, var=25.0, cov=1.0)).total.backward()
    assert h.grad is None and z.grad.abs().sum() > 0
    squeeze_loss(h, z, LossWeights(sim=0.0, var=25.0, cov=1.0), True).total.backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


# --- Table 5 rows c vs e in miniature ----------------------------------------------------------


def train_squeeze_pair(weights: LossWeights, steps: int = 300) -> tuple[torch.Tensor, torch.Tensor]:
    """Train student + squeeze module on a frozen generator; per-dim std of (z, h) afterwards."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    generator = FrozenFourierGenerator(g)
    student = nn.Sequential(nn.Linear(8, 64), build_projector(64, out_dim=16, num_layers=3))
    squeeze = SqueezeModule([16, 24], hidden_dim=64, out_dim=16, depth=3)
    params = [*student.parameters(), *squeeze.parameters()]
    # The paper's optimiser: SGD, momentum 0.9, CIFAR base lr 0.03 and weight decay 5e-4.
    optimizer = torch.optim.SGD(params, lr=0.03, momentum=0.9, weight_decay=5e-4)
    for _ in range(steps):
        images, features = generator(torch.randn(128, 4, generator=g))
        loss = squeeze_loss(squeeze(features), student(images), weights).total
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    student.eval()
    squeeze.eval()
    with torch.no_grad():
        images, features = generator(torch.randn(512, 4, generator=g))
        return student(images).std(dim=0), squeeze(features).std(dim=0)


def test_without_variance_and_covariance_the_pair_collapses():
    z_std, h_std = train_squeeze_pair(LossWeights(sim=25.0, var=0.0, cov=0.0))
    assert z_std.max() < 1e-2 and h_std.max() < 1e-2


def test_with_variance_and_covariance_the_pair_does_not_collapse():
    z_std, h_std = train_squeeze_pair(PAPER)
    assert z_std.min() > 0.5 and 0.7 < z_std.mean() < 1.3
    assert h_std.min() > 0.5


# --- all-gather with gradients over a real 2-process gloo group --------------------------------

WORLD_SIZE = 2


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return torch.randn(8, 5, generator=g), torch.randn(8, 5, generator=g)


def rank_slice(x: torch.Tensor, rank: int) -> torch.Tensor:
    n = x.shape[0] // WORLD_SIZE
    return x[rank * n : (rank + 1) * n]


def probe_weights(rank: int) -> torch.Tensor:
    return torch.arange(40.0).reshape(8, 5) * (rank + 1)


def gloo_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        z1, z2 = (rank_slice(z, rank).clone().requires_grad_() for z in global_batch())
        gathered = gather(z1)
        (probe_weights(rank) * gathered).sum().backward()
        probe_grad = z1.grad.clone()
        z1.grad = None
        terms = vicreg_loss(z1, z2, PAPER)
        terms.total.backward()
        result = {
            "gathered": gathered.detach(),
            "probe_grad": probe_grad,
            "terms": {k: v.detach() for k, v in terms.terms.items()},
            "total": terms.total.detach(),
            "grads": (z1.grad, z2.grad),
        }
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_gather_over_two_gloo_ranks(tmp_path):
    mp.spawn(gloo_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD_SIZE)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]
    full1, full2 = global_batch()

    # Forward: every rank sees the global batch, in rank order.
    for result in ranks:
        torch.testing.assert_close(result["gathered"], full1, rtol=0, atol=0)
    # Backward: rank r's slice gets the sum over ranks of the gradient each put on that slice.
    summed_probe = sum(probe_weights(k) for k in range(WORLD_SIZE))
    for r, result in enumerate(ranks):
        torch.testing.assert_close(result["probe_grad"], rank_slice(summed_probe, r))

    # VICReg over 2 ranks = VICReg on the global batch in one process.
    z1, z2 = full1.clone().requires_grad_(), full2.clone().requires_grad_()
    single = vicreg_loss(z1, z2, PAPER)
    single.total.backward()
    for name in ("real/var", "real/cov"):  # batch statistics: identical on every rank
        for result in ranks:
            torch.testing.assert_close(result["terms"][name], single.terms[name])
    mean_total = sum(result["total"] for result in ranks) / WORLD_SIZE
    torch.testing.assert_close(mean_total, single.total.detach())
    # DDP averages gradients over ranks: rank r's gradient / W is the global gradient's slice.
    for r, result in enumerate(ranks):
        for rank_grad, full_grad in zip(result["grads"], (z1.grad, z2.grad), strict=True):
            torch.testing.assert_close(rank_grad / WORLD_SIZE, rank_slice(full_grad, r))


# --- parity with solo-learn's VICReg -----------------------------------------------------------


@pytest.mark.solo
def test_vicreg_loss_matches_solo_learn():
    solo_vicreg = pytest.importorskip("solo.losses.vicreg")
    g = torch.Generator().manual_seed(3)
    base1, base2 = torch.randn(2, 32, 16, generator=g)
    for weights in (PAPER, LossWeights(sim=1.0, var=10.0, cov=3.0)):
        ours1, ours2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
        theirs1, theirs2 = base1.clone().requires_grad_(), base2.clone().requires_grad_()
        ours = vicreg_loss(ours1, ours2, weights)
        theirs = solo_vicreg.vicreg_loss_func(
            theirs1, theirs2, weights.sim, weights.var, weights.cov
        )
        torch.testing.assert_close(ours.total, theirs)
        ours.total.backward()
        theirs.backward()
        torch.testing.assert_close(ours1.grad, theirs1.grad)
        torch.testing.assert_close(ours2.grad, theirs2.grad)
    solo_terms = {
        "real/sim": solo_vicreg.invariance_loss(base1, base2),
        "real/var": solo_vicreg.variance_loss(base1, base2),
        "real/cov": solo_vicreg.covariance_loss(base1, base2),
    }
    ours = vicreg_loss(base1, base2, PAPER).terms
    for name, value in solo_terms.items():
        torch.testing.assert_close(ours[name], value)
