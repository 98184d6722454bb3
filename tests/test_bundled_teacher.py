"""The bundled digits teacher (``bundled:NAME`` paths) and the fix each missing teacher names."""

import subprocess
import sys

import pytest
import torch

from solo_sqsp.teachers import (
    TeacherFileError,
    build_teacher,
    bundled_teachers,
    detect_kind,
    resolve_teacher_path,
)


def test_bundled_digits_teacher_loads_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "digits_teacher.pt" in bundled_teachers()
    teacher = build_teacher("bundled:digits_teacher.pt", class_sampling="none")
    sample = teacher.sample(4, torch.Generator().manual_seed(0))
    assert teacher.resolution == 16 and teacher.img_channels == 3 and teacher.c_dim == 0
    assert sample.images.shape == (4, 3, 16, 16)
    assert all(torch.isfinite(f).all() for f in sample.features)


def test_bundled_name_is_a_checkpoint_not_a_python_factory(tmp_path):
    # "bundled:digits_teacher.pt" also has the shape of a module:factory spec.
    assert detect_kind("bundled:digits_teacher.pt") == "checkpoint"
    grid = tmp_path / "grid.png"
    command = ["inspect", "bundled:digits_teacher.pt", "--grid", str(grid)]
    result = subprocess.run(
        [sys.executable, "-m", "solo_sqsp.teachers", *command],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pooled widths [128, 128, 64]" in result.stdout and grid.stat().st_size > 0


def test_unknown_bundled_name_lists_what_ships():
    with pytest.raises(TeacherFileError, match=r"no bundled teacher 'cifar10.pkl'.*digits_teacher"):
        resolve_teacher_path("bundled:cifar10.pkl")


def test_plain_paths_pass_through():
    assert resolve_teacher_path("zoo/checkpoints/cifar10.pkl") == "zoo/checkpoints/cifar10.pkl"


@pytest.mark.parametrize(
    ("name", "fix"),
    [
        ("cifar10u-cifar-ada-best-fid.pkl", "bash zoo/cifar10.sh"),
        ("cifar10.pkl", "bash zoo/cifar10.sh"),
        ("cifar100u-stylegan2-ada.pkl", "scripts/teacher/train_teacher.py"),
        ("stl10u-stylegan2-ada.pkl", "scripts/teacher/train_teacher.py"),
    ],
)
def test_missing_teacher_names_the_fix(tmp_path, name, fix):
    with pytest.raises(TeacherFileError, match="teacher file not found") as error:
        build_teacher(tmp_path / name)
    assert fix in str(error.value)
