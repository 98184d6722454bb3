"""Smoke run of benchmarks/throughput.py at --quick shapes: every figure is produced and sane."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from solo_sqsp.config_lookup import REPO_ROOT

SCRIPT = REPO_ROOT / "benchmarks" / "throughput.py"


def test_quick_run_writes_the_ratios_and_raw_figures(tmp_path: Path) -> None:
    out = tmp_path / "throughput.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--bank", "--iters", "1", "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sqsp / VICReg step" in done.stdout and "FLOP floor" in done.stdout

    result = json.loads(out.read_text())
    for key in ("step_ratio_sqsp_over_vicreg", "flop_ratio", "augment_speedup"):
        assert result[key] > 0
    assert 0 < result["teacher_fraction"] < 1
    assert set(result["cpu_time_ratios"]) == {
        "sqsp_over_vicreg",
        "teacher_fraction",
        "bank_over_vicreg",
    }
    assert result["step_ratio_bank_over_vicreg"] > 0 and result["bank_size"] == 16
    medians, flops = result["median_s"], result["flops"]
    assert set(medians) == {"sqsp", "sqsp_bank", "vicreg", "teacher"}
    assert result["flop_ratio"] == flops["sqsp"] / flops["vicreg"]
    # The bank step skips the generator: fewer FLOPs by at least the teacher's own count.
    assert flops["sqsp"] - flops["sqsp_bank"] >= 0.9 * flops["teacher"]
    for name in ("sqsp", "sqsp_bank", "vicreg"):
        memory = result["peak_memory_mib"][name]
        assert memory["peak_mib"] >= memory["before_steps_mib"] > 0
