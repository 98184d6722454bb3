"""Teacher loading (kinds, errors) and ``python -m solo_sqsp.teachers inspect``."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from nvidia_pickle_factory import nvidia_network_pickle
from PIL import Image

from solo_sqsp.teachers import (
    GeneratorTeacher,
    TeacherFileError,
    UnsafePickleError,
    build_teacher,
    detect_kind,
    load_generator,
)
from solo_sqsp.teachers.__main__ import main
from solo_sqsp.teachers.network_pickle import save_teacher_checkpoint
from solo_sqsp.teachers.stylegan2 import Generator

GENERATOR_KWARGS = {
    "z_dim": 16,
    "w_dim": 16,
    "img_resolution": 16,
    "img_channels": 3,
    "mapping_kwargs": {"num_layers": 2},
    "synthesis_kwargs": {"channel_base": 256, "channel_max": 32},
}
STYLEGAN2_FACTORY = "solo_sqsp.teachers.stylegan2:Generator"


def grid_side(tiles: int, resolution: int = 16, padding: int = 2) -> int:
    return tiles * (resolution + padding) + padding


def small_generator(c_dim: int) -> Generator:
    torch.manual_seed(c_dim)
    return Generator(c_dim=c_dim, **GENERATOR_KWARGS)


@pytest.fixture
def checkpoint_file(tmp_path):
    path = tmp_path / "teacher.pt"
    save_teacher_checkpoint(small_generator(c_dim=0), path)
    return path


@pytest.fixture
def nvidia_file(tmp_path):
    path = tmp_path / "network-snapshot-000100.pkl"
    path.write_bytes(nvidia_network_pickle(small_generator(c_dim=4)))
    return path


def run_inspect(capsys, *args) -> tuple[int, list[str], list[str]]:
    code = main(["inspect", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err.splitlines()


def test_detect_kind_by_magic_suffix_and_spec(tmp_path, checkpoint_file, nvidia_file):
    assert detect_kind(checkpoint_file) == "checkpoint"
    assert detect_kind(nvidia_file) == "stylegan2"
    renamed = tmp_path / "weights.bin"
    renamed.write_bytes(nvidia_file.read_bytes())
    assert detect_kind(renamed) == "stylegan2"  # a plain pickle without the .pkl suffix
    assert detect_kind(STYLEGAN2_FACTORY) == "python"
    text = tmp_path / "notes.txt"
    text.write_text("not a teacher")
    with pytest.raises(TeacherFileError, match="pass kind="):
        detect_kind(text)
    with pytest.raises(TeacherFileError, match="is a folder"):
        detect_kind(tmp_path)


def test_missing_teacher_names_the_path_and_the_zoo(tmp_path):
    missing = tmp_path / "cifar10.pkl"
    for kind in ("auto", "stylegan2", "checkpoint"):
        with pytest.raises(TeacherFileError, match="zoo/") as caught:
            load_generator(missing, kind)
        assert str(missing) in str(caught.value)
    with pytest.raises(ValueError, match="unknown"):
        load_generator(missing, "onnx")


def test_each_kind_loads_the_stored_generator(checkpoint_file, nvidia_file):
    from_checkpoint = load_generator(checkpoint_file)
    for key, value in small_generator(c_dim=0).state_dict().items():
        assert torch.equal(from_checkpoint.state_dict()[key], value), key
    from_pickle = load_generator(nvidia_file, "stylegan2")
    assert (type(from_pickle), from_pickle.c_dim) == (Generator, 4)
    for key, value in small_generator(c_dim=4).state_dict().items():
        assert torch.equal(from_pickle.state_dict()[key], value), key
    from_factory = load_generator(
        STYLEGAN2_FACTORY, factory_kwargs={"c_dim": 2, **GENERATOR_KWARGS}
    )
    assert (type(from_factory), from_factory.c_dim) == (Generator, 2)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("solo_sqsp.no_such_module:make", "cannot import"),
        ("solo_sqsp.teachers.stylegan2:make_teacher", "has no 'make_teacher'"),
        ("solo_sqsp.teachers.stylegan2:NOISE_MODES", "not callable"),
        ("collections:OrderedDict", "returned a OrderedDict"),
        ("not a spec", "not an import path"),
    ],
)
def test_bad_python_teacher_is_named(spec, message):
    with pytest.raises(TeacherFileError, match=message):
        load_generator(spec, "python")


def test_build_teacher_samples_like_a_teacher_of_the_original(checkpoint_file):
    built = build_teacher(checkpoint_file, features="mapping", noise_mode="random")
    direct = GeneratorTeacher(small_generator(c_dim=0), features="mapping", noise_mode="random")
    a = built.sample(3, torch.Generator().manual_seed(5))
    b = direct.sample(3, torch.Generator().manual_seed(5))
    torch.testing.assert_close(a.images, b.images)
    torch.testing.assert_close(a.features[0], b.features[0])
    assert built.feature_names == ["mapping"]


def test_inspect_checkpoint_prints_facts_and_writes_the_grid(capsys, tmp_path, checkpoint_file):
    grid = tmp_path / "grids" / "samples.png"
    code, out, err = run_inspect(capsys, checkpoint_file, "--grid", grid, "--grid-size", 3)
    assert (code, err) == (0, [])
    generator = small_generator(c_dim=0)
    parameters = sum(p.numel() for p in generator.parameters())
    for fact in (
        f"teacher: {checkpoint_file} (kind: checkpoint)",
        "class: solo_sqsp.teachers.stylegan2.Generator",
        "z_dim: 16",
        "c_dim: 0",
        "w_dim: 16",
        "resolution: 16",
        "channels: 3",
        f"num_ws: {generator.num_ws}",
        f"parameters: {parameters:,}",
        "mapping layers: 2",
        "selected: 3 modules, pooled widths [32, 32, 16], total 80",
        f"grid: {grid} (3 x 3 samples, unconditional, seed 0)",
    ):
        assert fact in out
    rows = {line.split()[1]: line.split() for line in out if line.startswith("  * ")}
    assert list(rows) == ["synthesis.b4", "synthesis.b8", "synthesis.b16"]
    assert rows["synthesis.b8"][-3:] == ["8)", "->", "32"] and "(32," in rows["synthesis.b8"]
    assert any(line.split()[0] == "mapping" for line in out if line.startswith("    "))

    with Image.open(grid) as png:
        assert (png.format, png.size, png.mode) == ("PNG", (grid_side(3), grid_side(3)), "RGB")
        pixels = np.asarray(png)
    teacher = GeneratorTeacher(generator)
    z = torch.randn(3, 16, generator=torch.Generator().manual_seed(0))
    first = teacher(z, torch.zeros(3, 0))[0][0].clamp(-1, 1).add(1).div(2)
    expected = first.mul(255).add(0.5).clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    tile = pixels[2:18, 2:18].astype(int)
    assert np.abs(tile - expected.astype(int)).max() <= 1


def test_inspect_nvidia_pickle_grid_has_a_row_per_class(tmp_path, nvidia_file):
    grid = tmp_path / "classes.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "solo_sqsp.teachers",
            "inspect",
            nvidia_file,
            "--grid",
            grid,
            "--grid-size",
            "2",
            "--features",
            "mapping",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "(kind: stylegan2)" in result.stdout and "c_dim: 4" in result.stdout
    assert "  * mapping " in result.stdout and "pooled widths [16]" in result.stdout
    assert "(4 x 2 samples, rows = classes 0,1,2,3, seed 0)" in result.stdout
    with Image.open(grid) as png:
        assert png.size == (grid_side(2), grid_side(4))


def bad_inputs(tmp_path, nvidia_file) -> dict[str, tuple[list, str]]:
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(nvidia_file.read_bytes()[:1000])
    empty = tmp_path / "empty.pkl"
    empty.write_bytes(b"")
    unsafe = tmp_path / "unsafe.pkl"
    unsafe.write_bytes(pickle.dumps(os.system))
    return {
        "missing": ([tmp_path / "absent.pkl"], "scripts/teacher/train_teacher.py"),
        "truncated": ([truncated], str(truncated)),
        "empty": ([empty], "empty"),
        "unsafe": ([unsafe], "system"),
        "regex": ([nvidia_file, "--features", r"synthesis\.layer\d+"], "matches no module"),
        "classes": ([nvidia_file, "--grid", tmp_path / "g.png", "--classes", "1,9"], "[9]"),
    }


@pytest.mark.parametrize("case", ["missing", "truncated", "empty", "unsafe", "regex", "classes"])
def test_inspect_bad_input_exits_nonzero_with_one_line(capsys, tmp_path, nvidia_file, case):
    args, expected = bad_inputs(tmp_path, nvidia_file)[case]
    code, _, err = run_inspect(capsys, *args)
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith("error: ") and expected in err[0]


def test_unsafe_pickle_is_refused_before_anything_runs(tmp_path, nvidia_file):
    unsafe = bad_inputs(tmp_path, nvidia_file)["unsafe"][0][0]
    with pytest.raises(UnsafePickleError, match="system"):
        load_generator(unsafe)


def test_python_m_bad_file_exits_nonzero(tmp_path):
    missing = tmp_path / "cifar10.pkl"
    result = subprocess.run(
        [sys.executable, "-m", "solo_sqsp.teachers", "inspect", missing],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and result.stdout == ""
    # one line, the last: before it only warnings of third-party imports may appear (timm and
    # solo-learn's registry notices, when solo-learn is installed)
    lines = result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "bash zoo/cifar10.sh" in lines[-1]
    assert [line for line in lines if str(missing) in line] == [lines[-1]]
