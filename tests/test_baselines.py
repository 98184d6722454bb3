"""The ``vicreg`` and ``simsiam`` baselines (Table 2): short CPU fits on stand-in CIFAR-10 data on
each training domain, and their losses against the formulas (and solo-learn's, when present)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from small_generator import small_generator
from standin_data import trust_checksums, write_cifar
from torchvision.datasets import CIFAR10

from solo_sqsp.config import parse_cfg
from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.methods import ACTIVE_BASE, SimSiam, VICReg, get_method
from solo_sqsp.methods.domains import DomainMixin
from solo_sqsp.methods.simsiam import negative_cosine_loss, simsiam_loss
from solo_sqsp.methods.synthetic_feed import SYNTHETIC_STATE_KEY
from solo_sqsp.metrics.collapse import output_std
from solo_sqsp.models.heads import HEADS, head_choice
from solo_sqsp.teachers.network_pickle import save_teacher_checkpoint
from solo_sqsp.training.pretrain import run_pretrain

CIFAR10_CONFIGS = REPO_ROOT / "scripts" / "pretrain" / "cifar10"
SMALL = [
    "method_kwargs.proj_hidden_dim=32",
    "method_kwargs.proj_output_dim=32",
    "accelerator=cpu",
    "devices=1",
    "data.num_workers=0",
    "knn_eval.k=3",
    "++limit_train_batches=2",
    "++limit_val_batches=1",
    "max_epochs=1",
    "optimizer.batch_size=8",
    "precision=32",
]


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("teacher") / "teacher.pt"
    save_teacher_checkpoint(small_generator(channel_base=128, channel_max=16), path)
    return path


@pytest.mark.parametrize(
    ("config", "extra"),
    [
        ("vicreg_mix_cifar10", []),
        ("simsiam_syn_cifar10", ["method_kwargs.pred_hidden_dim=8"]),
    ],
)
def test_fits_on_every_domain(tmp_path, monkeypatch, teacher_file, config, extra) -> None:
    standin = write_cifar(tmp_path / "cifar", CIFAR10, train_per_file=8, num_test=8)
    trust_checksums(monkeypatch, CIFAR10, standin)
    with initialize_config_dir(config_dir=str(CIFAR10_CONFIGS), version_base="1.2"):
        cfg = compose(
            config,
            [
                *SMALL,
                *extra,
                f"data.train_path={standin.root}",
                f"data.val_path={standin.root}",
                f"method_kwargs.teacher.path={teacher_file}",
                f"checkpoint.dir={tmp_path / 'runs'}",
            ],
        )
    metrics = run_pretrain(cfg)
    assert metrics["steps"] == 2 and math.isfinite(metrics["val_loss"])
    # weights_only=True as evaluation reads it (solo-learn's SimSiam scheduler patch is dropped).
    checkpoint = torch.load(Path(metrics["run_dir"]) / "last.ckpt", weights_only=True)
    keys = checkpoint["state_dict"].keys()
    assert any(k.startswith("projector.") for k in keys)
    assert not any("synthesis" in k or "mapping" in k for k in keys)
    if config.startswith("vicreg_real"):
        assert SYNTHETIC_STATE_KEY not in checkpoint
    else:
        assert checkpoint[SYNTHETIC_STATE_KEY]["step"] == 2
    if config.startswith("vicreg") and ACTIVE_BASE == "builtin":  # terms named by domain
        logged = (Path(metrics["run_dir"]) / "metrics.csv").read_text().splitlines()[0]
        assert "train_vicreg_mix/sim" in logged and "train_vicreg_real/" not in logged


def test_the_active_base_provides_vicreg_and_simsiam() -> None:
    for name, builtin in (("vicreg", VICReg), ("simsiam", SimSiam)):
        method = get_method(name)
        assert issubclass(method, DomainMixin)
        if ACTIVE_BASE == "builtin":
            assert issubclass(method, builtin)


@pytest.mark.solo
def test_solo_learn_methods_are_used_with_our_domains() -> None:
    """With solo-learn's source on PYTHONPATH, its own VICReg/SimSiam (and any other method)
    come with the domain option."""
    pytest.importorskip("solo.methods")
    from solo.methods import BYOL
    from solo.methods import SimSiam as SoloSimSiam
    from solo.methods import VICReg as SoloVICReg

    assert issubclass(get_method("vicreg"), SoloVICReg)
    assert issubclass(get_method("simsiam"), SoloSimSiam)
    assert issubclass(get_method("byol"), BYOL) and issubclass(get_method("byol"), DomainMixin)


DIGITS_CONFIGS = REPO_ROOT / "scripts" / "pretrain" / "digits"
OUT, PRED = 32, 8  # projector output and predictor hidden widths of the head tests


def digits_model(config: str, head: str | None, drop_proj_layers: bool = False, *overrides: str):
    """The ``config`` method with ``method_kwargs.head=head`` (None: unset, the method's default
    applies; ``proj_layers`` removed: the head's default applies)."""
    with initialize_config_dir(config_dir=str(DIGITS_CONFIGS), version_base="1.2"):
        cfg = compose(
            config,
            [
                "++method_kwargs.proj_hidden_dim=64",
                f"method_kwargs.proj_output_dim={OUT}",
                f"++method_kwargs.pred_hidden_dim={PRED}",
                "optimizer.batch_size=8",
                *overrides,
            ],
        )
    OmegaConf.set_struct(cfg, False)
    OmegaConf.update(cfg, "method_kwargs.head", head, force_add=True)
    if head is None:
        cfg.method_kwargs.pop("head")
    if drop_proj_layers:
        cfg.method_kwargs.pop("proj_layers", None)
    return get_method(cfg.method)(parse_cfg(cfg))


def shapes(module: torch.nn.Module) -> list[tuple[int, ...]]:
    return [tuple(p.shape) for p in module.parameters()]


def block(d: int) -> list[tuple[int, ...]]:
    """Parameters of ``Linear(d, d, bias=False), BN(d), ReLU``."""
    return [(d, d), (d,), (d,)]


def test_authors_heads_have_the_reference_shapes_and_train() -> None:
    """On either base: solo-learn's methods get their heads replaced (``install_heads``)."""
    vicreg = digits_model("vicreg_real_digits", "authors")  # proj_layers 5, inherited
    d = vicreg.features_dim
    assert shapes(vicreg.projector) == block(d) * 4 + [(OUT, d)]
    default_depth = digits_model("vicreg_real_digits", "authors", drop_proj_layers=True)
    assert shapes(default_depth.projector) == shapes(vicreg.projector)
    simsiam = digits_model("simsiam_real_digits", "authors", drop_proj_layers=True)
    assert simsiam.cfg.method_kwargs.proj_layers == 2
    assert shapes(simsiam.projector) == [*block(d), (OUT, d)]
    last = simsiam.projector[-1]
    assert isinstance(last, torch.nn.BatchNorm1d) and not last.affine
    assert shapes(simsiam.predictor) == [(PRED, OUT), (PRED,), (PRED,), (OUT, PRED), (OUT,)]
    assert digits_model("simsiam_real_digits", "authors").cfg.method_kwargs.proj_layers == 2
    deeper = digits_model("simsiam_real_digits", "authors", False, "++method_kwargs.proj_layers=5")
    assert shapes(deeper.projector) == block(d) * 4 + [(OUT, d)]

    rng = torch.Generator().manual_seed(0)
    batch = [torch.arange(8), [torch.randn(8, 3, 16, 16, generator=rng) for _ in range(2)]]
    for model in (vicreg, simsiam):
        model.train()
        model.log_dict = lambda *args, **kwargs: None  # no Trainer to log to
        loss = model.training_step([*batch, torch.arange(8) % 10], 0)
        loss.backward()
        assert torch.isfinite(loss)
        assert all(
            p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector[0:1].parameters()
        )


@pytest.mark.skipif(ACTIVE_BASE != "builtin", reason="the builtin methods build the heads")
def test_solo_heads_are_solo_learns() -> None:
    vicreg = digits_model("vicreg_real_digits", "solo")
    d = vicreg.features_dim
    assert shapes(vicreg.projector) == [
        (64, d),
        (64,),
        (64,),
        (64,),
        (64, 64),
        (64,),
        (64,),
        (64,),
        (OUT, 64),
        (OUT,),
    ]
    simsiam = digits_model("simsiam_real_digits", "solo")
    assert shapes(simsiam.projector) == [(64, d), (64,), (64,), (64, 64), (64,), (64,), (OUT, 64)]
    assert shapes(simsiam.predictor) == [(PRED, OUT), (PRED,), (PRED,), (OUT, PRED), (OUT,)]


def test_sqsp_student_has_the_vicreg_baselines_projector() -> None:
    """Either head gives Sq&Sp's student the projector of the VICReg row it is compared with; the
    paper's (``authors``) unless the config names another."""
    for head in HEADS:
        sqsp = digits_model("sqsp_digits", head)
        assert shapes(sqsp.projector) == shapes(digits_model("vicreg_real_digits", head).projector)
        features = [torch.randn(2, d) for d in sqsp.squeeze.in_dims]
        assert sqsp.squeeze(features).shape == (2, OUT)
    default = digits_model("sqsp_digits", None, True)
    assert default.cfg.method_kwargs.head == "authors"
    assert shapes(default.projector) == block(default.features_dim) * 4 + [
        (OUT, default.features_dim)
    ]


def test_unknown_or_unavailable_head_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"method_kwargs.head='author': .*\('solo', 'authors'\)"):
        digits_model("vicreg_real_digits", "author")
    cfg = OmegaConf.create({"method_kwargs": {"head": "authors"}})
    with pytest.raises(
        ValueError, match=r"head='authors' applies to \['simsiam', 'sqsp', 'vicreg'\]"
    ):
        head_choice(cfg, "byol")


def test_simsiam_loss_is_the_symmetrised_negative_cosine() -> None:
    rng = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(6, 5, generator=rng, requires_grad=True) for _ in range(4))
    loss = simsiam_loss(p1, p2, z1, z2)
    cos = torch.nn.functional.cosine_similarity
    expected = -(cos(p1, z2, dim=1).mean() + cos(p2, z1, dim=1).mean()) / 2
    assert torch.allclose(loss, expected)
    loss.backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient on the targets
    assert negative_cosine_loss(z1, z1).item() == pytest.approx(-1.0)


@pytest.mark.solo
def test_simsiam_loss_is_solo_learns() -> None:
    solo_loss = pytest.importorskip("solo.losses.simsiam").simsiam_loss_func
    rng = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(6, 5, generator=rng) for _ in range(4))
    expected = solo_loss(p1, z2) / 2 + solo_loss(p2, z1) / 2
    assert torch.allclose(simsiam_loss(p1, p2, z1, z2), expected)


def test_output_std_flags_a_collapse() -> None:
    spread = torch.randn(512, 64, generator=torch.Generator().manual_seed(0))
    assert output_std(spread).item() * 8 == pytest.approx(1.0, abs=0.05)
    assert output_std(torch.ones(512, 64)).item() == 0.0
