"""The one solo-learn switch (solo_sqsp.compat): SOLO_SQSP_BASE decides for methods, data and the
linear model together, and a broken or absent solo-learn is reported, never half-used."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


def run_python(script: str, pythonpath: str, base: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    env.pop("SOLO_SQSP_BASE", None)
    if base is not None:
        env["SOLO_SQSP_BASE"] = base
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def solo_learn_checkout() -> str:
    spec = importlib.util.find_spec("solo")
    if spec is None or spec.origin is None:
        pytest.skip("needs solo-learn's source on PYTHONPATH")
    return str(Path(spec.origin).parents[1])


BASES_SCRIPT = """
    import sys
    import solo_sqsp.training.pretrain, solo_sqsp.evaluation.linear, solo_sqsp.evaluation.knn
    from solo_sqsp.data import active_backend
    from solo_sqsp.evaluation.linear_model import linear_implementation
    from solo_sqsp.methods import ACTIVE_BASE, BaseMethod
    solo = sorted(m for m in sys.modules if m == "solo" or m.startswith("solo."))
    print("bases:", ACTIVE_BASE, active_backend(), linear_implementation())
    print("base class:", BaseMethod.__module__)
    print("solo modules:", len(solo))
"""


@pytest.mark.solo
def test_builtin_switch_imports_no_solo_module_even_with_solo_learn_on_the_path() -> None:
    checkout = solo_learn_checkout()
    result = run_python(BASES_SCRIPT, checkout, "builtin")
    assert result.returncode == 0, result.stderr
    assert "bases: builtin builtin builtin" in result.stdout
    assert "base class: solo_sqsp.methods.builtin_base" in result.stdout
    assert "solo modules: 0" in result.stdout


@pytest.mark.solo
def test_auto_switch_uses_solo_learn_for_methods_data_and_linear_together() -> None:
    result = run_python(BASES_SCRIPT, solo_learn_checkout(), None)
    assert result.returncode == 0, result.stderr
    assert "bases: solo-learn solo-learn solo-learn" in result.stdout


def test_unknown_switch_value_is_refused() -> None:
    result = run_python("import solo_sqsp", "", "solo_learn")
    assert result.returncode != 0
    assert "SOLO_SQSP_BASE='solo_learn': choose one of ('auto', 'builtin', 'solo-learn')" in (
        result.stderr
    )


def test_broken_solo_install_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "solo" / "methods"
    package.mkdir(parents=True)
    (tmp_path / "solo" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("import solo_sqsp_missing_dependency\n")
    script = """
        import importlib, os
        from solo_sqsp import compat
        from solo_sqsp.data import active_backend
        print("auto:", compat.ACTIVE_BASE, active_backend())
        os.environ["SOLO_SQSP_BASE"] = "solo-learn"
        try:
            importlib.reload(compat)
        except ImportError as error:
            print("forced:", error)
    """
    result = run_python(script, str(tmp_path), None)
    assert result.returncode == 0, result.stderr
    assert "auto: builtin builtin" in result.stdout
    assert "solo-learn was found but does not import" in result.stderr
    assert "solo_sqsp_missing_dependency" in result.stderr
    assert "forced: SOLO_SQSP_BASE=solo-learn but solo-learn does not import" in result.stdout


def test_a_solo_package_without_the_current_api_is_not_used(tmp_path: Path) -> None:
    """The 2021 release on the package index has a ``solo`` package without these modules."""
    for folder in ("methods", "data"):
        (tmp_path / "solo" / folder).mkdir(parents=True)
        (tmp_path / "solo" / folder / "__init__.py").write_text("")
    (tmp_path / "solo" / "__init__.py").write_text("")
    (tmp_path / "solo" / "methods" / "__init__.py").write_text("METHODS = {}\n")
    for module in ("methods/base", "methods/linear", "data/pretrain_dataloader"):
        (tmp_path / "solo" / f"{module}.py").write_text("")
    (tmp_path / "solo" / "data" / "classification_dataloader.py").write_text("")
    result = run_python("import solo_sqsp; print(solo_sqsp.ACTIVE_BASE)", str(tmp_path), None)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "builtin"
    assert "lacks solo.methods.base.BaseMethod" in result.stderr
