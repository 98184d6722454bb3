"""The analyses: the unbiased squared-MMD estimator against its definition and known cases, and
both commands of ``python -m solo_sqsp.analysis`` end to end on the embedded digits with the
bundled teacher and a student from a real (two-step) pretraining run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from PIL import Image
from small_generator import small_generator

from solo_sqsp.analysis import median_bandwidth, squared_mmd
from solo_sqsp.analysis.__main__ import main
from solo_sqsp.analysis.samples import sampled_classes
from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.evaluation import CheckpointError
from solo_sqsp.teachers.network_pickle import save_teacher_checkpoint
from solo_sqsp.training.pretrain import run_pretrain

BUNDLED_TEACHER = "bundled:digits_teacher.pt"


def gaussian(n: int, d: int, shift: float, seed: int) -> torch.Tensor:
    return (
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        + shift
    )


def direct_squared_mmd(x: torch.Tensor, y: torch.Tensor, kernel) -> float:
    """Gretton et al. 2012, Eq. 3, written as the sums over index pairs."""
    m, n = len(x), len(y)
    xx = sum(kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(kernel(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(kernel(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return float(xx + yy - 2 * xy)


def test_estimator_matches_the_pairwise_definition() -> None:
    x, y = gaussian(7, 3, 0.0, 0), gaussian(9, 3, 0.5, 1)
    sigma = 1.7
    rbf = lambda a, b: torch.exp(-((a - b) ** 2).sum() / (2 * sigma**2))  # noqa: E731
    cubic = lambda a, b: (a @ b / 3 + 1) ** 3  # noqa: E731
    assert squared_mmd(x, y, "rbf", sigma) == pytest.approx(direct_squared_mmd(x, y, rbf), 1e-12)
    assert squared_mmd(x, y, "polynomial") == pytest.approx(direct_squared_mmd(x, y, cubic), 1e-12)


def test_median_bandwidth_is_the_median_pairwise_distance() -> None:
    x, y = gaussian(6, 4, 0.0, 2), gaussian(5, 4, 1.0, 3)
    pooled = torch.cat([x, y])
    distances = [
        (pooled[i] - pooled[j]).norm().item()
        for i in range(len(pooled))
        for j in range(i + 1, len(pooled))
    ]
    assert median_bandwidth(x, y) == pytest.approx(float(np.median(distances)), abs=1e-6)
    # torch's median of an even count is the lower middle value; 55 pairs here: exact.


def test_estimator_is_symmetric_near_zero_for_one_distribution_positive_for_two() -> None:
    x, same, shifted = gaussian(300, 5, 0.0, 4), gaussian(300, 5, 0.0, 5), gaussian(300, 5, 1.0, 6)
    for kernel in ("rbf", "polynomial"):
        assert squared_mmd(x, shifted, kernel) == pytest.approx(
            squared_mmd(shifted, x, kernel), rel=1e-9
        )
        null, gap = squared_mmd(x, same, kernel), squared_mmd(x, shifted, kernel)
        assert gap > 0 and gap > 20 * abs(null)
    assert abs(squared_mmd(x, same)) < 0.01


def test_estimator_rejects_bad_inputs() -> None:
    x = gaussian(5, 3, 0.0, 0)
    with pytest.raises(ValueError, match="one width"):
        squared_mmd(x, gaussian(5, 4, 0.0, 1))
    with pytest.raises(ValueError, match="at least 2 samples"):
        squared_mmd(x, x[:1])
    with pytest.raises(ValueError, match="bandwidth > 0"):
        squared_mmd(x, x, "rbf", 0.0)
    with pytest.raises(ValueError, match="bandwidth is 0"):
        median_bandwidth(torch.zeros(3, 2), torch.zeros(3, 2))


@pytest.fixture(scope="module")
def student_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits student after two real sqsp steps with the bundled teacher (small projector and
    squeeze widths): its run folder, with ``last.ckpt`` and ``args.json``."""
    overrides = [
        "data.dataset=digits",
        "data.train_path=null",
        "data.val_path=null",
        "data.num_workers=0",
        "augmentations.0.crop_size=16",
        f"method_kwargs.teacher.path={BUNDLED_TEACHER}",
        "method_kwargs.squeeze.hidden_dim=64",
        "method_kwargs.squeeze.out_dim=64",
        "method_kwargs.proj_output_dim=64",
        "optimizer.batch_size=8",
        "accelerator=cpu",
        "devices=1",
        "precision=32",
        "knn_eval.k=3",
        "max_epochs=1",
        "++limit_train_batches=2",
        "++limit_val_batches=1",
        f"checkpoint.dir={tmp_path_factory.mktemp('runs')}",
    ]
    config_dir = REPO_ROOT / "scripts" / "pretrain" / "cifar10"
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.2"):
        cfg = compose("sqsp_cifar10", overrides=overrides)
    return Path(run_pretrain(cfg)["run_dir"])


def test_mmd_command_writes_a_deterministic_result(student_run: Path, tmp_path: Path) -> None:
    outputs = [tmp_path / "first.json", tmp_path / "second.json"]
    for out in outputs:
        args = ["mmd", "--checkpoint", str(student_run), "--num-samples", "48", "--out", str(out)]
        assert main(args) == 0
    result = json.loads(outputs[0].read_text())
    assert result == json.loads(outputs[1].read_text())
    assert result["teacher"] == BUNDLED_TEACHER and result["dataset"] == "digits"
    assert result["kernel"] == "rbf" and result["bandwidth"] > 0
    assert (result["num_samples"], result["feature_dim"], result["crop_size"]) == (48, 512, 16)
    assert np.isfinite([result["squared_mmd"], result["noise_floor"]]).all()
    assert abs(result["squared_mmd"]) < 0.05  # a close teacher: no large gap at n=48

    # An untrained generator's images are far from real digits: against the same real images
    # (same seed), a gap well above the noise floor and the trained teacher's.
    untrained = tmp_path / "untrained.pt"
    save_teacher_checkpoint(small_generator(resolution=16, channel_max=16), untrained)
    far_out = tmp_path / "far.json"
    args = ["mmd", "--checkpoint", str(student_run), "--teacher", str(untrained)]
    assert main([*args, "--num-samples", "48", "--out", str(far_out)]) == 0
    far = json.loads(far_out.read_text())
    assert far["teacher"] == str(untrained) and not far["l2_normalized"]
    assert far["squared_mmd"] > max(0.01, 10 * abs(far["noise_floor"]), 5 * result["squared_mmd"])


def test_mmd_command_names_what_is_wrong(student_run: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lower --num-samples to at most"):
        main(["mmd", "--checkpoint", str(student_run), "--num-samples", "5000"])
    lone = tmp_path / "lone.ckpt"
    lone.write_bytes((student_run / "last.ckpt").read_bytes())
    with pytest.raises(CheckpointError, match=r"no args\.json beside the checkpoint"):
        main(["mmd", "--checkpoint", str(lone)])
    with pytest.raises(SystemExit):
        main(["mmd", "--checkpoint", str(student_run), "--bandwidth", "-1"])


def test_embed_command_with_a_student(student_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "fig2.png"
    args = ["embed", "--teacher", BUNDLED_TEACHER, "--checkpoint", str(student_run)]
    assert main([*args, "--num-samples", "40", "--num-labelled", "100", "--out", str(out)]) == 0
    assert Image.open(out).size[0] > Image.open(out).size[1]  # three panels side by side
    with np.load(out.with_suffix(".npz")) as stored:
        assert str(stored["method"]) in ("umap", "tsne")
        assert str(stored["label_source"]).startswith("student 20-NN class")
        assert stored["labels"].shape == (40,) and set(stored["labels"]) <= set(range(10))
        for key in ("generator_features", "latent_w", "student_features"):
            assert stored[key].shape == (40, 2) and np.isfinite(stored[key]).all()


def test_embed_command_colours_a_conditional_teacher_by_sampled_class(tmp_path: Path) -> None:
    teacher = tmp_path / "conditional.pt"
    save_teacher_checkpoint(small_generator(resolution=16, c_dim=3, channel_max=16), teacher)
    out = tmp_path / "conditional.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "solo_sqsp.analysis",
            "embed",
            "--teacher",
            str(teacher),
            "--num-samples",
            "40",
            "--method",
            "tsne",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tsne embedding of ['generator_features', 'latent_w']" in done.stdout
    with np.load(out.with_suffix(".npz")) as stored:
        assert str(stored["label_source"]) == "sampled class"
        assert set(stored["labels"]) == {0, 1, 2}
        assert stored["latent_w"].shape == (40, 2) and "student_features" not in stored


def test_sampled_classes_of_one_hot_rows_and_of_no_class() -> None:
    one_hot = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    assert sampled_classes(one_hot).tolist() == [1, -1, 0]
    assert sampled_classes(torch.zeros(2, 0)).tolist() == [-1, -1]
