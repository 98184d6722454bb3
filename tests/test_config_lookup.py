"""``--config-name`` lookup: experiments only (not config groups), an unknown name is one line
with the closest names."""

from __future__ import annotations

import subprocess
import sys

import pytest

from solo_sqsp.config_lookup import REPO_ROOT, experiment_configs, with_config_path

PRETRAIN = REPO_ROOT / "scripts" / "pretrain"


def test_lookup_lists_experiments_not_groups() -> None:
    names = {p.stem for p in experiment_configs(PRETRAIN)}
    assert {"sqsp_digits", "sqsp_cifar10", "vicreg_real_digits"} <= names
    assert not {p for p in experiment_configs(PRETRAIN) if "augmentations" in p.parts}


def test_a_name_resolves_to_its_folder() -> None:
    argv = with_config_path(["main_pretrain.py", "--config-name", "sqsp_cifar10"], "pretrain", "x")
    assert argv[1:3] == ["--config-path", str(PRETRAIN / "cifar10")]
    assert argv[3:5] == ["--config-name", "sqsp_cifar10"]


def test_a_group_file_is_not_an_experiment() -> None:
    with pytest.raises(SystemExit, match="no config named 'digits'"):
        with_config_path(["main_pretrain.py", "--config-name", "digits"], "pretrain", "x")


def test_an_unknown_name_is_one_line_with_the_closest_names() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "main_pretrain.py"), "--config-name", "sqsp_cifar"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("main_pretrain.py: no config named 'sqsp_cifar'")
    assert "closest: sqsp_cifar10, sqsp_cifar100" in line
