"""The base method: builtin (always) and solo-learn's (when importable) train a tiny method.

The tiny method is a minimal VICReg-like subclass built exactly as ``sqsp`` is: it extends
``add_and_assert_specific_cfg``, ``learnable_params`` and ``forward`` and calls
``super().training_step``.
"""

from __future__ import annotations

import math
import warnings

import lightning.pytorch as pl
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.utils.data import DataLoader, Dataset

from solo_sqsp.methods import base
from solo_sqsp.methods.builtin_base import BaseMethod as BuiltinBaseMethod
from solo_sqsp.methods.knn_bank import knn_validation_loaders
from solo_sqsp.metrics.knn_classifier import WeightedKNNClassifier
from solo_sqsp.optim.lars import LARS
from solo_sqsp.optim.lr_schedule import build_lr_scheduler

NUM_CLASSES, NUM_SAMPLES, RESOLUTION, BATCH = 4, 32, 16, 8
CHANNELS_LAST = torch.channels_last  # the bases forward in it (performance.disable_channel_last)


def vicreg_like_loss(z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """Invariance + variance + covariance, enough to train the tiny method."""

    def variance(z: torch.Tensor) -> torch.Tensor:
        return torch.relu(1 - torch.sqrt(z.var(0) + 1e-4)).mean()

    def covariance(z: torch.Tensor) -> torch.Tensor:
        z = z - z.mean(0)
        cov = z.T @ z / (z.size(0) - 1)
        return (cov - torch.diag(torch.diag(cov))).pow(2).sum() / z.size(1)

    invariance = nn.functional.mse_loss(z1, z2)
    return 25 * invariance + 25 * (variance(z1) + variance(z2)) + covariance(z1) + covariance(z2)


def make_tiny_method(parent: type) -> type:
    """A VICReg-like subclass of ``parent`` (either base)."""

    class TinyVICReg(parent):
        def __init__(self, cfg):
            super().__init__(cfg)
            dim = cfg.method_kwargs.proj_dim
            self.projector = nn.Sequential(
                nn.Linear(self.features_dim, dim),
                nn.BatchNorm1d(dim),
                nn.ReLU(),
                nn.Linear(dim, dim),
            )

        @staticmethod
        def add_and_assert_specific_cfg(cfg):
            cfg = super(TinyVICReg, TinyVICReg).add_and_assert_specific_cfg(cfg)
            cfg.method_kwargs.proj_dim = base.omegaconf_select(cfg, "method_kwargs.proj_dim", 32)
            return cfg

        @property
        def learnable_params(self):
            return [
                *super().learnable_params,
                {"name": "projector", "params": self.projector.parameters()},
            ]

        def forward(self, X):
            out = super().forward(X)
            out["z"] = self.projector(out["feats"])
            return out

        def training_step(self, batch, batch_idx):
            out = super().training_step(batch, batch_idx)
            loss = vicreg_like_loss(*out["z"])
            self.log("train_tiny_loss", loss, on_epoch=True)
            return loss + out["loss"]

    return TinyVICReg


def tiny_cfg(**overrides):
    cfg = OmegaConf.create(
        {
            "method": "tiny_vicreg",
            "backbone": {"name": "resnet18"},
            "data": {
                "dataset": "digits",
                "num_classes": NUM_CLASSES,
                "num_large_crops": 2,
                "num_small_crops": 0,
            },
            "optimizer": {
                "name": "sgd",
                "batch_size": BATCH,
                "lr": 0.05,
                "classifier_lr": 0.1,
                "weight_decay": 1e-4,
                "kwargs": {"momentum": 0.9},
            },
            "scheduler": {
                "name": "warmup_cosine",
                "warmup_epochs": 1,
                "warmup_start_lr": 0.0,
                "min_lr": 1e-3,
            },
            "knn_eval": {"enabled": True, "k": 5, "distance_func": "cosine"},
            "max_epochs": 2,
        }
    )
    for key, value in overrides.items():
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
    return cfg


class ClassPatterns(Dataset):
    """Per-class random patterns plus per-view noise; solo-learn's batch formats."""

    def __init__(self, num_views: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        patterns = torch.rand(NUM_CLASSES, 3, RESOLUTION, RESOLUTION, generator=generator) * 2 - 1
        self.labels = torch.arange(NUM_SAMPLES) % NUM_CLASSES
        noise = torch.rand(NUM_SAMPLES, num_views, 3, RESOLUTION, RESOLUTION, generator=generator)
        self.views = patterns[self.labels][:, None] + 0.3 * noise
        self.num_views = num_views

    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, index: int):
        if self.num_views == 1:
            return self.views[index, 0], self.labels[index]
        return index, list(self.views[index]), self.labels[index]


CLEAN_TRAIN = ClassPatterns(1, seed=0)  # the training split's images through the eval transform
BANK_BATCH = 5  # not a divisor of NUM_SAMPLES: the last partial batch must reach the bank


def loaders() -> tuple[DataLoader, list[DataLoader]]:
    """Training views, then the validation split and the clean training split (the k-NN's
    bank, ``methods.knn_bank``) as a run with the online k-NN reads them."""
    train = DataLoader(ClassPatterns(2, seed=0), batch_size=BATCH, drop_last=True)
    val = DataLoader(ClassPatterns(1, seed=1), batch_size=BATCH)
    clean = DataLoader(CLEAN_TRAIN, batch_size=BATCH, shuffle=True, drop_last=True)
    return train, knn_validation_loaders(val, clean, BANK_BATCH)


class Recorder(pl.Callback):
    """Learning rates at every step, the k-NN banks just before the module evaluates them and
    the number of batches the classifier's validation metrics average."""

    def __init__(self) -> None:
        self.lrs: list[list[float]] = []
        self.banks: list[dict[str, torch.Tensor]] = []
        self.val_batches: list[int] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs.append([group["lr"] for group in trainer.optimizers[0].param_groups])

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self.val_batches.append(len(pl_module.validation_step_outputs))
            knn = pl_module.knn
            self.banks.append(
                {name: torch.cat(getattr(knn, name)).clone() for name in knn._defaults}
            )


def fit(model: pl.LightningModule, recorder: Recorder, max_epochs: int) -> pl.Trainer:
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
        callbacks=[recorder],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, *loaders())
    return trainer


def train_and_check(parent: type) -> tuple[pl.LightningModule, pl.Trainer, Recorder]:
    """Fit the tiny method for 2 epochs and check what every base must do."""
    pl.seed_everything(0, verbose=False)
    model = make_tiny_method(parent)(tiny_cfg())
    fixed_views = next(iter(loaders()[0]))[1]

    def fixed_batch_loss() -> float:
        model.train()
        with torch.no_grad():
            return vicreg_like_loss(*(model(x)["z"] for x in fixed_views)).item()

    initial = {name: p.detach().clone() for name, p in model.named_parameters()}
    loss_before = fixed_batch_loss()
    recorder = Recorder()
    trainer = fit(model, recorder, max_epochs=2)
    model.eval()
    with torch.no_grad():  # what the last validation saw (before train mode moves BN stats)
        clean_features = model.backbone(CLEAN_TRAIN.views[:, 0].to(memory_format=CHANNELS_LAST))

    assert fixed_batch_loss() < 0.9 * loss_before
    for prefix in ("backbone.", "projector.", "classifier."):
        changed = [
            not torch.equal(p, initial[name])
            for name, p in model.named_parameters()
            if name.startswith(prefix)
        ]
        assert any(changed), f"{prefix} parameters did not train"
    metrics = trainer.callback_metrics
    for key in ("train_class_loss", "train_acc1", "train_tiny_loss", "val_loss", "val_acc1"):
        assert key in metrics and torch.isfinite(metrics[key]), key

    # k-NN: each epoch's bank holds the clean training split, every image once, as the
    # backbone in eval mode sees it (reset after use); the queries and the classifier's metrics
    # are the validation split's only; the logged accuracy is the k-NN's on exactly those banks.
    assert len(recorder.banks) == 2 and recorder.val_batches == [NUM_SAMPLES // BATCH] * 2
    for bank in recorder.banks:
        assert bank["train_features"].shape == (NUM_SAMPLES, model.features_dim)
        assert bank["test_features"].shape == (NUM_SAMPLES, model.features_dim)
    last = recorder.banks[-1]
    assert torch.equal(last["train_targets"], CLEAN_TRAIN.labels)
    torch.testing.assert_close(last["train_features"], clean_features, atol=1e-5, rtol=1e-4)
    reference = WeightedKNNClassifier(k=5, distance_fx="cosine")
    reference.update(**last)
    assert metrics["val_knn_acc1"].item() == pytest.approx(reference.compute()[0])
    return model, trainer, recorder


def expected_warmup_cosine(step: int, base_lr: float, warmup: int, total: int) -> float:
    """Linear from 0 to base_lr over ``warmup`` steps, then cosine to 1e-3 at ``total``."""
    if step < warmup:
        return base_lr * step / warmup
    return 1e-3 + (base_lr - 1e-3) * 0.5 * (
        1 + math.cos(math.pi * (step - warmup) / (total - warmup))
    )


def test_tiny_method_trains_through_builtin_base():
    model, _, recorder = train_and_check(BuiltinBaseMethod)
    assert model.backbone.conv1.kernel_size == (3, 3)  # digits: CIFAR stem
    steps_per_epoch = NUM_SAMPLES // BATCH
    assert len(recorder.lrs) == 2 * steps_per_epoch
    for step, (backbone_lr, classifier_lr, projector_lr) in enumerate(recorder.lrs):
        expected = expected_warmup_cosine(step, 0.05, steps_per_epoch, 2 * steps_per_epoch)
        assert backbone_lr == pytest.approx(expected)
        assert projector_lr == pytest.approx(expected)
        assert classifier_lr == pytest.approx(
            expected_warmup_cosine(step, 0.1, steps_per_epoch, 2 * steps_per_epoch)
        )


@pytest.mark.solo
def test_tiny_method_trains_through_solo_learn_base():
    pytest.importorskip("solo.methods")
    import solo.methods
    from solo.methods.base import BaseMethod as SoloBaseMethod

    assert base.ACTIVE_BASE == "solo-learn"
    assert issubclass(base.BaseMethod, SoloBaseMethod)
    tiny = make_tiny_method(base.BaseMethod)
    base.register_method("tiny_vicreg_test", tiny)
    try:
        assert solo.methods.METHODS["tiny_vicreg_test"] is tiny
        assert base.get_method("tiny_vicreg_test") is tiny
        # solo-learn's own VICReg, with the Table 2 domain switch (methods.domains)
        assert issubclass(base.get_method("vicreg"), solo.methods.METHODS["vicreg"])
    finally:
        del solo.methods.METHODS["tiny_vicreg_test"], base.METHODS["tiny_vicreg_test"]
    model, _, _ = train_and_check(base.BaseMethod)
    assert isinstance(model, SoloBaseMethod)
    assert model.backbone.conv1.padding == (1, 1)  # our CIFAR stem, also for digits


def test_builtin_is_active_without_solo_learn():
    try:
        import solo.methods  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("solo-learn is importable here")
    assert base.ACTIVE_BASE == "builtin"
    assert base.BaseMethod is BuiltinBaseMethod
    assert base.get_method("base") is BuiltinBaseMethod
    with pytest.raises(KeyError, match="not registered"):
        base.get_method("no_such_method")


def test_classifier_trains_on_detached_features():
    model = BuiltinBaseMethod(tiny_cfg(**{"knn_eval.enabled": False}))
    out = model(torch.randn(4, 3, RESOLUTION, RESOLUTION))
    assert out["feats"].shape == (4, 512) and out["logits"].shape == (4, NUM_CLASSES)
    nn.functional.cross_entropy(out["logits"], torch.arange(4) % NUM_CLASSES).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert model.classifier.weight.grad is not None


def test_learnable_params_and_bias_norm_exclusion():
    model = BuiltinBaseMethod(tiny_cfg(**{"optimizer.exclude_bias_n_norm_wd": True}))
    groups = model.learnable_params
    assert [g["name"] for g in groups] == ["backbone", "classifier"]
    assert groups[1]["lr"] == 0.1 and groups[1]["weight_decay"] == 0
    model.scheduler = "none"
    optimizer = model.configure_optimizers()
    names = [g["name"] for g in optimizer.param_groups]
    assert names == ["backbone", "backbone_no_decay", "classifier", "classifier_no_decay"]
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert all(p.ndim <= 1 for p in by_name["backbone_no_decay"]["params"])
    assert by_name["backbone_no_decay"]["weight_decay"] == 0
    assert by_name["backbone"]["weight_decay"] == 1e-4
    total = sum(p.numel() for g in optimizer.param_groups for p in g["params"])
    assert total == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["sgd", "lars", "adam", "adamw"])
def test_optimizers_construct_and_step(name: str):
    kwargs = {"sgd": {"momentum": 0.9}, "lars": {"momentum": 0.9, "eta": 0.02}}.get(name, {})
    cfg = tiny_cfg(**{"optimizer.name": name, "optimizer.kwargs": kwargs, "scheduler.name": "none"})
    model = BuiltinBaseMethod(cfg)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, BuiltinBaseMethod.OPTIMIZERS[name])
    before = model.classifier.weight.detach().clone()
    logits = model(torch.randn(4, 3, RESOLUTION, RESOLUTION))["logits"]
    nn.functional.cross_entropy(logits, torch.arange(4)).backward()
    optimizer.step()
    assert not torch.equal(model.classifier.weight, before)


def test_gradient_accumulation_scales_rates():
    model = BuiltinBaseMethod(tiny_cfg(accumulate_grad_batches=4))
    assert model.lr == pytest.approx(0.2) and model.classifier_lr == pytest.approx(0.4)
    assert model.min_lr == pytest.approx(4e-3)


def test_cosine_without_warmup_static_groups_and_step_schedule():
    weights = [nn.Parameter(torch.zeros(1)) for _ in range(2)]
    optimizer = torch.optim.SGD([{"params": [weights[0]]}, {"params": [weights[1]]}], lr=0.4)
    scheduler = build_lr_scheduler(
        optimizer, "warmup_cosine", warmup_steps=0, total_steps=10, min_lr=0.0, static_groups=[1]
    )
    for step in range(11):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(
            0.2 * (1 + math.cos(math.pi * step / 10))
        )
        assert optimizer.param_groups[1]["lr"] == 0.4
        optimizer.step()
        scheduler.step()

    optimizer = torch.optim.SGD(weights, lr=1.0)
    scheduler = build_lr_scheduler(optimizer, "step", lr_decay_steps=[2, 4])
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates == pytest.approx([1.0, 1.0, 0.1, 0.1, 0.01, 0.01])
    assert build_lr_scheduler(optimizer, "none") is None
    with pytest.raises(ValueError, match="lr_decay_steps"):
        build_lr_scheduler(optimizer, "step")
    with pytest.raises(ValueError, match=r"scheduler\.name"):
        build_lr_scheduler(optimizer, "cyclic")


def test_lars_trust_ratio_and_exclusion():
    weight = nn.Parameter(torch.tensor([[3.0, 4.0]]))  # norm 5
    bias = nn.Parameter(torch.tensor([1.0, -1.0]))
    weight.grad = torch.tensor([[0.6, 0.8]])  # norm 1
    bias.grad = torch.tensor([0.5, 0.5])
    lr, wd, eta = 0.1, 0.01, 0.02
    LARS([weight, bias], lr=lr, weight_decay=wd, eta=eta, exclude_bias_n_norm=True).step()
    trust = eta * 5.0 / (1.0 + wd * 5.0 + 1e-8)
    expected = torch.tensor([[3.0, 4.0]]) - lr * trust * (
        torch.tensor([[0.6, 0.8]]) + wd * torch.tensor([[3.0, 4.0]])
    )
    torch.testing.assert_close(weight.detach(), expected)
    torch.testing.assert_close(bias.detach(), torch.tensor([0.95, -1.05]))  # plain gradient


def test_lars_with_clipped_trust_is_sgd():
    """clip_lr caps the trust ratio at lr: with a huge eta every layer takes SGD's step."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(5, 3, generator=generator)
    grads = [torch.randn(5, 3, generator=generator) for _ in range(3)]
    lars_param, sgd_param = nn.Parameter(start.clone()), nn.Parameter(start.clone())
    options = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-3}
    lars = LARS([lars_param], eta=1e6, clip_lr=True, **options)
    sgd = torch.optim.SGD([sgd_param], **options)
    for grad in grads:
        lars_param.grad, sgd_param.grad = grad.clone(), grad.clone()
        lars.step()
        sgd.step()
    torch.testing.assert_close(lars_param.detach(), sgd_param.detach())


def test_multicrop_outputs_and_crop_count_check():
    cfg = tiny_cfg(**{"data.num_small_crops": 1, "knn_eval.enabled": False})
    model = make_tiny_method(BuiltinBaseMethod)(cfg)
    assert model.multicrop and model.num_crops == 3
    views = [torch.randn(4, 3, RESOLUTION, RESOLUTION) for _ in range(2)]
    small = torch.randn(4, 3, RESOLUTION // 2, RESOLUTION // 2)
    targets = torch.tensor([0, 1, -1, 2])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        outs = BuiltinBaseMethod.training_step(model, [None, [*views, small], targets], 0)
        assert len(outs["feats"]) == 3 and len(outs["z"]) == 2 and len(outs["logits"]) == 2
        assert outs["loss"].ndim == 0 and torch.isfinite(outs["loss"])
        with pytest.raises(ValueError, match="2 crops but the config asks for 3"):
            BuiltinBaseMethod.training_step(model, [None, views, targets], 0)


def test_missing_and_bad_keys_are_named():
    cfg = tiny_cfg()
    del cfg.data.num_large_crops
    with pytest.raises(ValueError, match=r"data\.num_large_crops.*parse_cfg"):
        BuiltinBaseMethod(cfg)
    with pytest.raises(ValueError, match=r"optimizer\.name='rmsprop'"):
        BuiltinBaseMethod(tiny_cfg(**{"optimizer.name": "rmsprop"}))
    with pytest.raises(ValueError, match=r"scheduler\.interval"):
        BuiltinBaseMethod(tiny_cfg(**{"scheduler.interval": "batch"}))
    with pytest.raises(ValueError, match=r"backbone\.name='vit_tiny'"):
        BuiltinBaseMethod(tiny_cfg(**{"backbone.name": "vit_tiny"}))


def test_defaults_match_solo_learn():
    cfg = tiny_cfg()
    del cfg.knn_eval, cfg.scheduler.warmup_start_lr
    cfg = BuiltinBaseMethod.add_and_assert_specific_cfg(cfg)
    assert cfg.knn_eval == {"enabled": False, "k": 20, "distance_func": "euclidean"}
    assert cfg.scheduler.interval == "step" and cfg.scheduler.warmup_start_lr == 3e-5
    assert cfg.accumulate_grad_batches == 1 and cfg.optimizer.exclude_bias_n_norm_wd is False
    assert cfg.backbone.kwargs == {} and cfg.backbone.cifar_stem is True
    assert cfg.performance.disable_channel_last is False and cfg.method_kwargs == {}
    assert BuiltinBaseMethod.add_and_assert_specific_cfg(cfg) == cfg  # idempotent
