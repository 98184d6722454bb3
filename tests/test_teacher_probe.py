"""``benchmarks/teacher_probe.py``: the nuisances read off an image, the linear probes, and a
probe of a small untrained generator end to end (its outputs are illegible, so no class)."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
from small_generator import small_generator

from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.teachers.loading import resolve_teacher_path
from solo_sqsp.teachers.network_pickle import load_teacher_checkpoint

sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
teacher_probe = importlib.import_module("teacher_probe")
teacher_quality = importlib.import_module("teacher_quality")


def rectangle_image(background, foreground, rows: slice, cols: slice) -> np.ndarray:
    image = np.empty((16, 16, 3))
    image[:] = background
    image[rows, cols] = foreground
    return np.round(image * 255).astype(np.uint8)


def test_image_targets_read_colours_polarity_position_and_size() -> None:
    dark_on_light = rectangle_image((0.9, 0.8, 0.7), (0.1, 0.2, 0.0), slice(5, 9), slice(3, 9))
    light_on_dark = rectangle_image((0.2, 0.4, 0.6), (1.0, 1.0, 0.2), slice(2, 12), slice(6, 8))
    targets = teacher_probe.image_targets(np.stack([dark_on_light, light_on_dark]))
    np.testing.assert_allclose(
        targets["background colour"], [[0.9, 0.8, 0.7], [0.2, 0.4, 0.6]], atol=0.003
    )
    np.testing.assert_allclose(
        targets["foreground colour"], [[0.1, 0.2, 0.0], [1.0, 1.0, 0.2]], atol=0.003
    )
    assert targets["polarity"].tolist() == [False, True]
    np.testing.assert_allclose(targets["position"], [[6.5, 5.5], [6.5, 6.5]])
    np.testing.assert_allclose(targets["size"], [np.sqrt(24), np.sqrt(20)])


def test_probes_find_a_planted_signal_and_not_noise() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(400, 30))
    linear = features @ rng.normal(size=(30, 2))
    assert teacher_probe.probe(features, linear, classify=False, seed=0) > 0.95
    assert teacher_probe.probe(features, rng.normal(size=400), classify=False, seed=0) < 0.05
    labels = features[:, :4].argmax(1)
    assert teacher_probe.probe(features, labels, classify=True, seed=0) > 80
    assert teacher_probe.probe(features, rng.integers(0, 4, 400), classify=True, seed=0) < 40


def test_untrained_generator_probe_end_to_end(tmp_path) -> None:
    generator = small_generator(resolution=16, channel_base=64, channel_max=16).eval()
    torch.manual_seed(0)
    judge = teacher_quality.Judge(
        teacher_quality.DigitClassifier().eval(), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0
    )
    result = teacher_probe.run_probe(generator, judge, samples=120, seed=0)
    assert result["confident"] < teacher_probe.MIN_LEGIBLE and result["probed"] == 120
    assert result["dims"]["pooled blocks together"] == sum(
        result["dims"][f"b{res} pooled"] for res in (4, 8, 16)
    )
    assert result["dims"]["w"] == 16 and result["dims"]["RGB pixels"] == 768
    for scores in result["scores"].values():
        assert "class" not in scores and set(scores) == set(teacher_probe.TARGETS) - {"class"}
        assert all(value <= 100 for value in scores.values())
    # the background is a median of border pixels: RGB pixels predict it almost linearly
    assert result["scores"]["RGB pixels"]["background colour"] > 0.8
    assert set(result["variance_explained"]["pooled blocks together"]) == {
        "colours",
        "geometry",
        "colours and geometry",
    }
    assert f"| b16 pooled | {result['dims']['b16 pooled']} |" in teacher_probe.markdown(result)
    teacher_probe.heatmap(result, tmp_path / "probe.png", "untrained")
    assert (tmp_path / "probe.png").stat().st_size > 0
    images, features = teacher_probe.sample_features(generator, 20, seed=0)
    again, features_again = teacher_probe.sample_features(generator, 20, seed=0)
    assert np.array_equal(images, again) and features.keys() == features_again.keys()
    for key, value in features.items():
        np.testing.assert_allclose(value, features_again[key], rtol=1e-5, atol=1e-6)


def test_student_probe_of_a_finished_squeeze_run(tmp_path, monkeypatch) -> None:
    """``--student``: a smoke Squeeze run's squeezed target ``h`` and student ``z`` are probed
    beside the teacher's features, with their agreement."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["table2", "--quick", "--rows", "squeeze_digits"])
    importlib.import_module("table2").main()
    (run_dir,) = {path.parent for path in tmp_path.rglob("last.ckpt")}
    generator = load_teacher_checkpoint(resolve_teacher_path("bundled:digits_teacher.pt"))
    torch.manual_seed(0)
    judge = teacher_quality.Judge(
        teacher_quality.DigitClassifier().eval(), torch.zeros(1), torch.zeros(1), torch.zeros(1), 0
    )
    result = teacher_probe.run_probe(generator.eval(), judge, samples=100, seed=0, student=run_dir)
    assert result["dims"]["squeezed target h"] == result["dims"]["student z"] == 16
    assert set(result["variance_explained"]) == {
        "pooled blocks together",
        "squeezed target h",
        "student z",
    }
    fit = result["student"]
    assert fit["run"] == run_dir.name and fit["h_variance"] > 0 and fit["z_variance"] > 0
    assert fit["h_r2_by_z"] <= 1
    assert "R2 of h by z" in teacher_probe.markdown(result)
    monkeypatch.setattr(sys, "argv", ["table2", "--quick", "--rows", "vicreg_real_digits"])
    importlib.import_module("table2").main()
    (vicreg_dir,) = {path.parent for path in tmp_path.rglob("last.ckpt")} - {run_dir}
    with pytest.raises(SystemExit, match="no squeeze module"):
        teacher_probe.check_student(vicreg_dir, "bundled:digits_teacher.pt", untrained=False)
    teacher_probe.check_student(run_dir, "bundled:digits_teacher.pt", untrained=False)
    snapshot = str(REPO_ROOT / "benchmarks" / "teacher_snapshots" / "digits_teacher-005000.pt")
    with pytest.raises(SystemExit, match="trained with teacher"):
        teacher_probe.check_student(run_dir, snapshot, untrained=False)
    with pytest.raises(SystemExit, match="--untrained"):
        teacher_probe.check_student(run_dir, "bundled:digits_teacher.pt", untrained=True)
    with pytest.raises(SystemExit, match="not a finished run"):
        teacher_probe.check_student(tmp_path, "bundled:digits_teacher.pt", untrained=False)
