"""Bad input fails before any training step with one clear message and leaves no run folder;
a non-finite loss stops the run at the step it happens, keeping the last good checkpoint.

Every case goes through the real entry point (``run_pretrain`` on a composed config; one case
through ``main_pretrain.py``) on small stand-in data and a small StyleGAN2 teacher.
"""

from __future__ import annotations

import json
import os
import pickle
import traceback
from pathlib import Path

import pytest
import torch
from nvidia_pickle_factory import nvidia_network_pickle
from small_generator import small_generator
from tiny_pretrain import run_main_pretrain, tiny_config, write_inputs

from solo_sqsp.teachers import build_teacher
from solo_sqsp.teachers.errors import UnsafePickleError
from solo_sqsp.teachers.network_pickle import save_teacher_checkpoint
from solo_sqsp.teachers.stylegan2 import Generator
from solo_sqsp.training.nonfinite import NonFiniteError
from solo_sqsp.training.preflight import check_teacher_fits_views
from solo_sqsp.training.pretrain import run_pretrain


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``write_inputs`` plus teachers: 16 px, 1-channel, NaN weights, and the first half of an
    NVIDIA-structured network pickle."""
    root = tmp_path_factory.mktemp("failures")
    paths = write_inputs(root)
    save_teacher_checkpoint(
        small_generator(resolution=16, channel_base=64, channel_max=16),
        paths.setdefault("teacher16", root / "teacher16.pt"),
    )
    gray = Generator(
        z_dim=16,
        c_dim=0,
        w_dim=16,
        img_resolution=32,
        img_channels=1,
        mapping_kwargs={"num_layers": 2},
        synthesis_kwargs={"channel_base": 128, "channel_max": 16},
    )
    save_teacher_checkpoint(gray, paths.setdefault("gray", root / "gray.pt"))
    generator = small_generator(channel_base=128, channel_max=16)
    with torch.no_grad():
        generator.synthesis.b8.conv0.weight[0, 0, 0, 0] = float("nan")
    save_teacher_checkpoint(generator, paths.setdefault("nan", root / "nan.pt"))
    whole = nvidia_network_pickle(small_generator(channel_base=128, channel_max=16))
    paths["truncated"] = root / "truncated.pkl"
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    return paths


def expect_early_failure(
    files: dict[str, Path], tmp_path: Path, overrides: list[str], error: type, match: str
) -> str:
    """Run the config; assert it raises ``error`` matching ``match`` before Lightning's fit
    (no frame of Lightning in the traceback) and that no run folder exists. The message."""
    out = tmp_path / "runs"
    with pytest.raises(error, match=match) as caught:
        run_pretrain(tiny_config(files, out, overrides))
    frames = traceback.extract_tb(caught.tb)
    assert not [frame for frame in frames if f"{os.sep}lightning{os.sep}" in frame.filename]
    assert not out.exists()
    return str(caught.value)


@pytest.mark.parametrize(
    ("case", "overrides", "match"),
    [
        ("missing folder", ["data.train_path={tmp}/nowhere"], "nowhere"),
        ("empty folder", ["data.train_path={tmp}/empty"], "empty"),
        ("wrong format", ["data.dataset=cifar10", "data.train_path={train}"], "cifar"),
    ],
)
def test_bad_dataset(files, tmp_path, case, overrides, match) -> None:
    (tmp_path / "empty").mkdir()
    overrides = [o.format(tmp=tmp_path, train=files["train"]) for o in overrides]
    message = expect_early_failure(files, tmp_path, overrides, ValueError, match)
    assert "data." in message


@pytest.mark.parametrize(
    ("teacher", "match"),
    [
        ("{tmp}/missing.pkl", "teacher file not found: .*missing.pkl"),
        ("{truncated}", "truncated or corrupt .* download or copy it again"),
        ("{tmp}/list.pkl", "the pickle holds a list; expected a StyleGAN2-ADA network pickle"),
        ("{tmp}/image.pkl", "not with a pickle header"),
    ],
)
def test_bad_teacher_file(files, tmp_path, teacher, match) -> None:
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    (tmp_path / "image.pkl").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    path = teacher.format(tmp=tmp_path, truncated=files["truncated"])
    expect_early_failure(files, tmp_path, [f"method_kwargs.teacher.path={path}"], ValueError, match)


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ("optimizer.lr=-0.1", r"optimizer.lr=-0.1 is out of range; expected a number > 0"),
        ("optimizer.lr=fast", r"optimizer.lr='fast' is not a number"),
        ("optimizer.weight_decay=-1e-4", r"optimizer.weight_decay=-0.0001 is out of range"),
        ("optimizer.batch_size=0", r"optimizer.batch_size=0 is out of range; expected an integer"),
        ("optimizer.batch_size=8.5", r"optimizer.batch_size=8.5 is not an integer"),
        ("max_epochs=0", r"max_epochs=0 is out of range; expected an integer >= 1"),
        ("method_kwargs.syn_ratio=1.5", r"syn_ratio.*1.5"),
        ("method_kwargs.syn_ratio=-0.5", r"syn_ratio.*-0.5"),
    ],
)
def test_bad_numbers_are_named_before_a_run_folder_exists(files, tmp_path, override, match):
    expect_early_failure(files, tmp_path, [override], ValueError, match)


class _Touch:
    """Pickles as ``os.system('touch <marker>')``: runs only if the loader resolves os.system."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_hostile_teacher_file_is_refused_without_running_it(files, tmp_path) -> None:
    marker = tmp_path / "ran"
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps({"G_ema": _Touch(marker)}, protocol=4))
    overrides = [f"method_kwargs.teacher.path={hostile}"]
    expect_early_failure(
        files, tmp_path, overrides, UnsafePickleError, r"refusing to load global \w+\.system"
    )
    assert not marker.exists()


def test_teacher_smaller_than_the_crop(files, tmp_path) -> None:
    overrides = [f"method_kwargs.teacher.path={files['teacher16']}"]
    match = r"draws 16x16 images but augmentations\[0\].crop_size is 32: expected .* 32 px"
    expect_early_failure(files, tmp_path, overrides, ValueError, match)


def test_upsampling_a_small_teacher_is_allowed_when_asked(files) -> None:
    teacher = build_teacher(files["teacher16"])
    check_teacher_fits_views(teacher, 32, "t.pt", allow_upsampling=True)
    with pytest.raises(ValueError, match="allow_upsampling=True"):
        check_teacher_fits_views(teacher, 32, "t.pt")


def test_teacher_with_one_channel(files, tmp_path) -> None:
    overrides = [f"method_kwargs.teacher.path={files['gray']}"]
    match = "draws 1-channel images but the student reads 3-channel"
    expect_early_failure(files, tmp_path, overrides, ValueError, match)


def test_teacher_with_non_finite_features(files, tmp_path) -> None:
    overrides = [f"method_kwargs.teacher.path={files['nan']}"]
    match = r"NaN/inf on its first samples in images .*synthesis\.b8 .*re-download or re-train"
    expect_early_failure(files, tmp_path, overrides, NonFiniteError, match)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (["method_kwargs.teacher.features=nomatch"], "feature regex 'nomatch' matches no module"),
        (["+method_kwargs.teacher.features=[synthesis.b5]"], r"\['synthesis.b5'\] not found"),
        (["method_kwargs.syn_ratio=0"], r"syn_ratio must be in \(0, 1\]"),
        (["method_kwargs.syn_ratio=1.5"], r"syn_ratio must be in \(0, 1\]"),
        (["optimizer.batch_size=3"], "need at least 2 of each: raise the batch size"),
        (
            ["method_kwargs.squeeze.depth=0"],
            r"depth 0.* \d+ wide, but the student projector outputs 32: set the projector output",
        ),
        (["+augmentations.0.sharpen=0.5"], "sharpen"),
        (["method=nope"], "method 'nope' is not registered"),
        (["backbone.name=resnet7"], r"backbone.name='resnet7': choose one of"),
        (["+resume_from_checkpoint={tmp}/gone.ckpt"], "resume_from_checkpoint=.*gone.ckpt"),
    ],
)
def test_bad_settings(files, tmp_path, overrides, match) -> None:
    overrides = [o.format(tmp=tmp_path) for o in overrides]
    expect_early_failure(files, tmp_path, overrides, (ValueError, KeyError), match)


def test_a_warmup_as_long_as_the_run_is_shortened_with_a_warning(files, tmp_path) -> None:
    """The quick try ``max_epochs=1`` of a config that warms up for one epoch trains."""
    overrides = ["scheduler.name=warmup_cosine", "++scheduler.warmup_epochs=1", "max_epochs=1"]
    cfg = tiny_config(files, tmp_path / "runs", overrides)
    message = (
        "scheduler.warmup_epochs=1 is not shorter than max_epochs=1: warming up for 0.1 epochs"
    )
    with pytest.warns(UserWarning, match=message):
        metrics = run_pretrain(cfg)
    assert metrics["epochs"] == 1
    args = json.loads((Path(metrics["run_dir"]) / "args.json").read_text())
    assert args["scheduler"]["warmup_epochs"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"PK\x03\x04 truncated zip", "is not a readable Lightning checkpoint"),
        (None, "has no global_step: not a Lightning training"),
    ],
)
def test_unreadable_resume_checkpoint_fails_before_training(files, tmp_path, content, match):
    """A truncated file or a checkpoint without training state is refused by the preflight."""
    path = tmp_path / "broken.ckpt"
    if content is None:
        torch.save({"state_dict": {}}, path)  # weights only: no loop state to resume
    else:
        path.write_bytes(content)
    overrides = [f"++resume_from_checkpoint='{path}'"]
    expect_early_failure(files, tmp_path, overrides, ValueError, match)


def test_main_pretrain_prints_the_message(files, tmp_path) -> None:
    """The command line run fails with a non-zero status; its error line is the message."""
    missing = tmp_path / "missing.pkl"
    extra = [f"method_kwargs.teacher.path={missing}"]
    done = run_main_pretrain(files, tmp_path / "runs", extra, cwd=tmp_path)
    assert done.returncode != 0
    message = f"teacher file not found: {missing}"
    assert [line for line in done.stderr.splitlines() if message in line], done.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_non_finite_loss_stops_at_its_step_keeping_the_last_good_checkpoint(
    files, tmp_path
) -> None:
    """A learning rate of 1e30 blows the weights up after the first step: the second step's
    loss is NaN. The run stops naming step 1 and the terms, before the weights change; the
    epoch-0 checkpoint is the last one, with finite weights."""
    out = tmp_path / "runs"
    extra = ["optimizer.lr=1e30", "max_epochs=3", "++limit_train_batches=1", "++run_id=x"]
    cfg = tiny_config(files, out, extra)
    with pytest.raises(NonFiniteError) as caught:
        run_pretrain(cfg)
    message = str(caught.value)
    assert "at global step 1 (epoch 1)" in message, message
    assert "train_syn/sim" in message and "train_loss" in message
    assert "stopped before this step changed the weights" in message
    run_dir = out / "sqsp" / "sqsp-custom-x"
    assert sorted(path.name for path in run_dir.glob("*.ckpt")) == [
        "last.ckpt",
        "sqsp-custom-epoch=0.ckpt",
    ]
    saved = torch.load(run_dir / "last.ckpt", weights_only=True, map_location="cpu")
    assert saved["global_step"] == 1 and saved["epoch"] == 0
    assert all(torch.isfinite(t).all() for t in saved["state_dict"].values())
