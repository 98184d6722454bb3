"""Training domains (solo_sqsp.methods.domains): exact real/synthetic counts per view, labels of
synthetic samples, and the synthetic stream's per-rank seeding and resume, on a real small
StyleGAN2 teacher and the builtin (or solo-learn's) VICReg."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir
from small_generator import small_generator

from solo_sqsp.config import parse_cfg
from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.methods import SqueezeAndSpan, get_method
from solo_sqsp.methods.domains import UNLABELLED, DomainMixin, domain_split
from solo_sqsp.methods.synthetic_feed import SYNTHETIC_STATE_KEY, SyntheticFeed
from solo_sqsp.synthetic.stream import SyntheticSource
from solo_sqsp.teachers import GeneratorTeacher

DIGITS = REPO_ROOT / "scripts" / "pretrain" / "digits"
SMALL = [
    "method_kwargs.proj_output_dim=16",
    "knn_eval.enabled=False",
]


@pytest.fixture(scope="module")
def teacher() -> GeneratorTeacher:
    return GeneratorTeacher(small_generator(resolution=16), noise_mode="const")


def build(config: str, teacher: GeneratorTeacher | None, overrides=()) -> DomainMixin:
    with initialize_config_dir(config_dir=str(DIGITS), version_base="1.2"):
        cfg = compose(config, overrides=[*SMALL, *overrides])
    model = get_method(cfg.method)(parse_cfg(cfg), teacher=teacher)
    model.eval()  # batch statistics are not what these tests look at
    return model


def real_batch(n: int) -> list:
    rng = torch.Generator().manual_seed(1)
    views = [torch.randn(n, 3, 16, 16, generator=rng) for _ in range(2)]
    return [torch.arange(n), views, torch.arange(n) % 10]


def test_domain_split_counts_and_errors() -> None:
    assert domain_split("real", 8, 0.5) == (0, 8)
    assert domain_split("syn", 8, 0.5) == (8, 0)
    assert domain_split("mix", 8, 0.25) == (2, 6)
    with pytest.raises(ValueError, match="choose one of"):
        domain_split("synthetic", 8, 0.5)
    with pytest.raises(ValueError, match="use domain=syn"):
        domain_split("mix", 8, 1.0)
    with pytest.raises(ValueError, match="raise the batch size"):
        domain_split("mix", 4, 0.25)


def test_mix_appends_synthetic_views_with_unlabelled_targets(teacher) -> None:
    model = build(
        "vicreg_mix_digits", teacher, ["optimizer.batch_size=8", "method_kwargs.syn_ratio=0.25"]
    )
    assert isinstance(model, SyntheticFeed) and model.real_batch_size == 6
    model.on_fit_start()
    indexes, views, targets = real_batch(6)
    mixed_indexes, mixed, mixed_targets = model.with_synthetic_views([indexes, views, targets])

    assert len(mixed) == 2 and all(view.shape == (8, 3, 16, 16) for view in mixed)
    for real, both in zip(views, mixed, strict=True):
        assert torch.equal(both[:6], real)
    assert torch.equal(mixed_targets[:6], targets) and (mixed_targets[6:] == UNLABELLED).all()
    assert torch.equal(mixed_indexes[:6], indexes) and (mixed_indexes[6:] == UNLABELLED).all()
    assert not torch.allclose(mixed[0][6:], mixed[1][6:])  # independently augmented views

    # The synthetic rows are exactly the stream SyntheticSource draws for (seed, rank 0).
    reference = SyntheticSource(
        teacher,
        batch_size=2,
        augment=model.synthetic_augment,
        num_views=2,
        seed=model.cfg.method_kwargs.seed,
        rank=0,
    ).next_batch()
    assert all(torch.equal(m[6:], r) for m, r in zip(mixed, reference.views, strict=True))

    # The online classifier only learns from the labelled (real) rows.
    out = model.base_training_step(mixed[0], mixed_targets)
    expected = torch.nn.functional.cross_entropy(out["logits"][:6], targets)
    assert torch.allclose(out["loss"], expected)


def test_syn_replaces_every_view_and_the_classifier_sees_no_label(teacher) -> None:
    model = build(
        "simsiam_syn_digits", teacher, ["optimizer.batch_size=8", "knn_eval.enabled=True"]
    )
    # the online k-NN's bank is the clean training split (methods.knn_bank): it stays on
    assert model.real_batch_size == 8 and model.knn_eval is True
    model.on_fit_start()
    indexes, views, targets = model.with_synthetic_views(real_batch(8))
    assert [view.shape[0] for view in views] == [8, 8]
    assert (targets == UNLABELLED).all() and (indexes == UNLABELLED).all()
    assert not any(torch.allclose(v, r) for v, r in zip(views, real_batch(8)[1], strict=True))
    out = model.base_training_step(views[0], targets)
    assert out["loss"].item() == 0.0 and torch.isfinite(out["loss"])


def train_two_steps(model: DomainMixin, real_views_seed: int) -> torch.nn.Module:
    """Two SGD steps of ``model`` (train mode, as Lightning runs it) on one real batch whose
    views are drawn with ``real_views_seed``; returns the model."""
    model.train()
    model.on_fit_start()
    model.log_dict = lambda *args, **kwargs: None  # no Trainer to log to
    rng = torch.Generator().manual_seed(real_views_seed)
    views = [torch.randn(8, 3, 16, 16, generator=rng) for _ in range(2)]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for step in range(2):
        optimizer.zero_grad()
        model.training_step([torch.arange(8), views, torch.arange(8) % 10], step).backward()
        optimizer.step()
    return model


@pytest.mark.parametrize("config", ["vicreg_syn_digits", "simsiam_syn_digits"])
def test_syn_students_never_learn_from_real_images(teacher, config) -> None:
    """On ``syn`` the real views feed the online classifier alone: two runs whose real images
    differ end with the same student (weights and BN running statistics), not the same
    classifier; and the classifier does learn (the real views reach it)."""
    runs = []
    for seed in (1, 2):
        torch.manual_seed(0)
        model = build(
            config, teacher, ["optimizer.batch_size=8", "++method_kwargs.pred_hidden_dim=8"]
        )
        initial = model.classifier.weight.detach().clone()
        runs.append(train_two_steps(model, real_views_seed=seed).state_dict())
        assert not torch.equal(model.classifier.weight, initial)
        assert model.backbone.training  # put back in train mode after the classifier's pass
    first, second = runs
    student = [key for key in first if not key.startswith("classifier.")]
    assert any(key.endswith("running_mean") for key in student)
    assert any(key.startswith("projector.") and key.endswith("running_var") for key in student)
    # 2 steps x 2 synthetic views; the 2 x 2 real views add none
    assert int(first["backbone.bn1.num_batches_tracked"]) == 4
    for key in student:
        assert torch.equal(first[key], second[key]), key
    assert not torch.equal(first["classifier.weight"], second["classifier.weight"])


def test_synthetic_augment_mode_reaches_the_feed(teacher) -> None:
    per_batch = "++method_kwargs.synthetic.augment_mode=per_batch"
    model = build("vicreg_syn_digits", teacher, ["optimizer.batch_size=8", per_batch])
    assert model.synthetic_augment.mode == "per_batch"
    assert build("vicreg_syn_digits", teacher).synthetic_augment.mode == "per_sample"
    with pytest.raises(ValueError, match=r"synthetic.augment_mode='per_image' is unknown; use one"):
        build("vicreg_syn_digits", teacher, ["++method_kwargs.synthetic.augment_mode=per_image"])


def test_unaugmented_synthetic_views_read_as_the_probes_do(teacher) -> None:
    """Table 5 row a (no augmentation) on digits: the synthetic views are the teacher's images
    in grayscale when the probes read grayscale (``data.eval_grayscale``), in colour without."""
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    fit = ["optimizer.batch_size=8", "method_kwargs.proj_output_dim=80"]  # depth 0: teacher's
    gray = build("ablation_a_digits", teacher, fit).synthetic_augment
    view = gray(images, torch.Generator().manual_seed(4))
    raw = view * torch.tensor(gray.std).view(1, 3, 1, 1) + torch.tensor(gray.mean).view(1, 3, 1, 1)
    assert torch.allclose(raw[:, 0], raw[:, 1], atol=1e-5)
    assert torch.allclose(raw[:, 0], raw[:, 2], atol=1e-5)
    colour = [*fit, "data.eval_grayscale=False"]
    assert build("ablation_a_digits", teacher, colour).synthetic_augment is None


def test_stream_is_per_rank_and_resumes_from_a_checkpoint(teacher, monkeypatch) -> None:
    overrides = ["optimizer.batch_size=8"]
    first = build("vicreg_syn_digits", teacher, overrides)
    first.on_fit_start()
    for _ in range(2):
        first.with_synthetic_views(real_batch(8))
    checkpoint: dict = {}
    first.on_save_checkpoint(checkpoint)
    assert checkpoint[SYNTHETIC_STATE_KEY]["step"] == 2
    expected = first.with_synthetic_views(real_batch(8))[1]

    resumed = build("vicreg_syn_digits", teacher, overrides)
    resumed.on_load_checkpoint(checkpoint)
    resumed.on_fit_start()
    assert all(
        torch.equal(a, b)
        for a, b in zip(resumed.with_synthetic_views(real_batch(8))[1], expected, strict=True)
    )

    other_rank = build("vicreg_syn_digits", teacher, overrides)
    monkeypatch.setattr(type(other_rank), "global_rank", property(lambda self: 1))
    other_rank.on_load_checkpoint(checkpoint)  # rank 0's state resumes rank 1 on its own stream
    other_rank.on_fit_start()
    assert not torch.equal(other_rank.with_synthetic_views(real_batch(8))[1][0], expected[0])


def test_real_domain_builds_no_teacher_and_keeps_the_batch() -> None:
    model = build("vicreg_real_digits", None, ["method_kwargs.teacher.path=does-not-exist.pt"])
    assert "teacher" not in model.__dict__ and not hasattr(model, "real_batch_size")
    model.on_fit_start()
    assert model.synthetic is None
    checkpoint: dict = {}
    model.on_save_checkpoint(checkpoint)
    assert SYNTHETIC_STATE_KEY not in checkpoint


def test_sqsp_and_domains_compose_the_same_synthetic_feed() -> None:
    assert issubclass(SqueezeAndSpan, SyntheticFeed)
    assert issubclass(get_method("vicreg"), SyntheticFeed)
    assert issubclass(get_method("simsiam"), DomainMixin)


@pytest.mark.parametrize("config", ["sqsp_digits", "vicreg_mix_digits"])
@pytest.mark.both_bases
def test_a_loader_of_the_whole_batch_trains_the_same_split(teacher, config) -> None:
    """solo-learn's own main_pretrain.py loads B real images a step; the method takes its real
    share B - round(a B) of them, so the step equals ours on that share (same synthetic batch)."""
    model = build(config, teacher, ["optimizer.batch_size=8", "method_kwargs.syn_ratio=0.25"])
    model.log_dict = lambda *args, **kwargs: None  # no Trainer to log to
    assert model.real_batch_size == 6
    whole = real_batch(8)
    share = [whole[0][:6], [view[:6] for view in whole[1]], whole[2][:6]]
    losses = []
    for batch in (whole, share):
        model.on_fit_start()  # the same synthetic stream for each
        losses.append(model.training_step(batch, 0))
    assert torch.equal(losses[0], losses[1])
