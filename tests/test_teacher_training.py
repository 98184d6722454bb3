"""Training a teacher generator: real steps at tiny width, the checkpoint our loaders read, exact
resume, DiffAugment, and the command-line script end to end."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from solo_sqsp.data.digits import load_embedded_digits
from solo_sqsp.teachers import build_teacher
from solo_sqsp.teachers.network_pickle import load_teacher_checkpoint, save_teacher_checkpoint
from solo_sqsp.teachers.training import (
    Discriminator,
    TeacherTrainer,
    TeacherTrainingConfig,
    diff_augment,
    images_to_training_tensor,
    load_training_state,
    minibatch_stddev,
    sample_grid,
    save_training_state,
)

ROOT = Path(__file__).resolve().parents[1]
TINY = TeacherTrainingConfig(
    resolution=8,
    z_dim=8,
    w_dim=8,
    mapping_layers=1,
    channel_base=128,
    channel_max=16,
    batch_size=4,
    r1_interval=2,
    mbstd_group=2,
    augment=("translation", "color"),
)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> torch.Tensor:
    digits = load_embedded_digits(tmp_path_factory.mktemp("cache"))
    return images_to_training_tensor(digits.train.images[:64], TINY.resolution)


def parameters(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


def test_training_images_are_scaled_and_resized():
    pixels = np.array([[[[0, 255, 128]] * 16] * 16], dtype=np.uint8)
    tensor = images_to_training_tensor(pixels, 8)
    assert tensor.shape == (1, 3, 8, 8)
    torch.testing.assert_close(
        tensor[0, :, 0, 0], torch.tensor([-1.0, 1.0, 0.0039]), atol=1e-3, rtol=0
    )
    with pytest.raises(ValueError, match="uint8"):
        images_to_training_tensor(pixels.astype(np.float32), 8)


def test_steps_update_all_networks_with_finite_losses(images):
    trainer = TeacherTrainer(images, TINY, seed=0)
    before = {name: parameters(getattr(trainer, name)) for name in ("G", "D", "G_ema")}
    for _ in range(3):
        stats = trainer.step()
        assert all(np.isfinite(value) for value in stats.values())
    assert {"loss_d", "loss_g", "d_real", "d_fake"} <= set(stats)
    assert trainer.iteration == 3 and trainer.images_seen == 12
    for name, old in before.items():
        new = parameters(getattr(trainer, name))
        assert any(not torch.equal(a, b) for a, b in zip(old, new, strict=True)), name
    # the EMA trails the live generator
    assert any(
        not torch.equal(a, b)
        for a, b in zip(parameters(trainer.G), parameters(trainer.G_ema), strict=True)
    )


def test_r1_penalty_runs_on_its_interval(images):
    trainer = TeacherTrainer(images, TINY, seed=0)
    stats = [trainer.step() for _ in range(3)]
    assert ["r1" in s for s in stats] == [True, False, True]
    assert stats[0]["r1"] > 0


def test_checkpoint_round_trip_through_the_loaders(images, tmp_path):
    trainer = TeacherTrainer(images, TINY, seed=0)
    trainer.step()
    path = tmp_path / "teacher.pt"
    save_teacher_checkpoint(trainer.G_ema, path, {"iterations": trainer.iteration})
    loaded = load_teacher_checkpoint(path)
    z = torch.randn(5, TINY.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = trainer.G_ema(z, None, noise_mode="const")
    torch.testing.assert_close(loaded(z, None, noise_mode="const"), expected)
    teacher = build_teacher(path)
    sample = teacher.sample(6, torch.Generator().manual_seed(0))
    assert sample.images.shape == (6, 3, 8, 8)
    assert teacher.feature_names == ["synthesis.b4", "synthesis.b8"]
    assert teacher.feature_dims == [TINY.channels(4), TINY.channels(8)]
    assert path.stat().st_size < 10 * 2**20


def test_resume_continues_exactly(images, tmp_path):
    """2 steps, save, load into a fresh trainer, 2 more == 4 uninterrupted steps, bit for bit."""
    straight = TeacherTrainer(images, TINY, seed=3)
    for _ in range(4):
        straight.step()
    first = TeacherTrainer(images, TINY, seed=3)
    for _ in range(2):
        first.step()
    save_training_state(first, tmp_path / "state.pt")
    resumed = TeacherTrainer(images, TINY, seed=3)
    resumed.load_state_dict(load_training_state(tmp_path / "state.pt"))
    assert resumed.iteration == 2
    assert torch.equal(resumed.rng.get_state(), first.rng.get_state())
    for _ in range(2):
        resumed.step()
    assert resumed.iteration == 4
    assert torch.equal(resumed.rng.get_state(), straight.rng.get_state())
    for name in ("G", "D", "G_ema"):
        for a, b in zip(
            getattr(resumed, name).state_dict().values(),
            getattr(straight, name).state_dict().values(),
            strict=True,
        ):
            assert torch.equal(a, b), name


def test_resume_refuses_another_setup(images, tmp_path):
    save_training_state(TeacherTrainer(images, TINY, seed=0), tmp_path / "state.pt")
    other = TeacherTrainer(images, TeacherTrainingConfig(**{**TINY.__dict__, "lr": 0.01}))
    with pytest.raises(ValueError, match="config="):
        other.load_state_dict(load_training_state(tmp_path / "state.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a state")
    with pytest.raises(ValueError, match="not a readable teacher training state"):
        load_training_state(tmp_path / "junk.pt")


def test_translation_shifts_content_with_zero_fill():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8) + 1
    shifted = diff_augment(images, ("translation",), torch.Generator().manual_seed(0))
    for original, moved in zip(images, shifted, strict=True):
        matches = []
        for dy in range(-1, 2):
            for dx in range(-1, 2):
                padded = torch.nn.functional.pad(original, [1, 1, 1, 1])
                window = padded[:, 1 - dy : 9 - dy, 1 - dx : 9 - dx]
                matches.append(torch.equal(window, moved))
        assert sum(matches) == 1
    assert torch.equal(diff_augment(images, (), torch.Generator()), images)


def test_colour_augmentation_is_per_sample_and_differentiable():
    images = torch.zeros(4, 3, 8, 8, requires_grad=True)
    out = diff_augment(images, ("color",), torch.Generator().manual_seed(0))
    assert len(set(out.mean(dim=(1, 2, 3)).tolist())) == 4
    out.sum().backward()
    assert images.grad is not None


def test_discriminator_shapes_and_minibatch_stddev():
    x = torch.randn(4, 16, 4, 4)
    y = minibatch_stddev(x, 2)
    assert y.shape == (4, 17, 4, 4)
    torch.testing.assert_close(
        minibatch_stddev(torch.ones(4, 16, 4, 4), 2)[:, 16], torch.full((4, 4, 4), 1e-4)
    )
    logits = Discriminator(TINY)(torch.randn(4, 3, 8, 8))
    assert logits.shape == (4,)


def test_sample_grid_writes_a_png(images, tmp_path):
    trainer = TeacherTrainer(images, TINY, seed=0)
    sample_grid(trainer.G_ema, tmp_path / "grid.png", rows=2, cols=3)
    with Image.open(tmp_path / "grid.png") as grid:
        assert grid.size == (3 * 64, 2 * 64)


def test_script_trains_saves_and_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "teacher.pt"
    script = str(ROOT / "scripts" / "teacher" / "train_teacher.py")
    command = [
        script,
        "--out", str(out),
        "--resolution", "8",
        "--channel-base", "64",
        "--channel-max", "8",
        "--z-dim", "4",
        "--w-dim", "4",
        "--batch", "4",
    ]  # fmt: skip
    monkeypatch.setenv("SOLO_SQSP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [*command, "--iters", "2"])
    runpy.run_path(script, run_name="__main__")
    assert out.is_file() and out.with_suffix(".png").is_file()
    assert out.with_suffix(".state.pt").is_file()
    snapshots = ["--snapshot-every", "2", "--snapshot-dir", str(tmp_path / "snaps")]
    monkeypatch.setattr(sys, "argv", [*command, "--iters", "5", "--resume", *snapshots])
    runpy.run_path(script, run_name="__main__")
    assert "at iteration 2" in capsys.readouterr().out.split("resumed from", 1)[1]
    extra = torch.load(out, weights_only=True)["extra"]
    assert extra["iterations"] == 5 and extra["data"].startswith("embedded digits")
    assert load_teacher_checkpoint(out).img_resolution == 8
    # teachers along training: iteration 4 kept apart (iteration 2 was before --snapshot-every)
    (snapshot,) = (tmp_path / "snaps").iterdir()
    assert snapshot.name == "teacher-000004.pt"
    assert torch.load(snapshot, weights_only=True)["extra"]["iterations"] == 4
    assert load_teacher_checkpoint(snapshot).img_resolution == 8
