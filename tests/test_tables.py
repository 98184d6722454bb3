"""One yaml per table row: every baseline, ablation (Table 5) and knowledge-source (Table 1)
config composes, parses and carries its row's settings; ``benchmarks/table2.py``,
``table5.py``, ``bank_accuracy.py`` and ``teacher_curve.py`` run end to end in ``--quick``
mode, and a rerun reuses finished runs."""

from __future__ import annotations

import copy
import json
import math
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from solo_sqsp.config import parse_cfg
from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.methods import get_method

PRETRAIN = REPO_ROOT / "scripts" / "pretrain"
ROW_PATTERNS = ("vicreg_*", "simsiam_*", "ablation_*", "latent_*", "generator_vanilla_*")
ROW_CONFIGS = sorted(
    path.relative_to(PRETRAIN).with_suffix("").as_posix()
    for pattern in ROW_PATTERNS
    for path in PRETRAIN.glob(f"*/{pattern}.yaml")
)
CPU = ["accelerator=cpu", "devices=1", "precision=32"]
# Table 5: squeeze depth, synthetic augmentation, (sim, var, cov) weights, syn_ratio.
ABLATION = {
    "a": (0, False, (1.0, 0.0, 0.0), 1.0),
    "b": (0, True, (1.0, 0.0, 0.0), 1.0),
    "c": (3, True, (1.0, 0.0, 0.0), 1.0),
    "d": (3, True, (25.0, 25.0, 0.0), 1.0),
    "e": (3, True, (25.0, 25.0, 1.0), 1.0),
    "f": (3, True, (25.0, 25.0, 1.0), 0.5),
}


def compose_row(name: str, overrides=()) -> DictConfig:
    folder, config = name.split("/")
    with initialize_config_dir(config_dir=str(PRETRAIN / folder), version_base="1.2"):
        return compose(config, overrides=[*CPU, *overrides])


def test_every_dataset_has_the_table2_baselines() -> None:
    for folder in ("cifar10", "cifar100", "stl10", "imagenet-100", "imagenet", "digits"):
        dataset = folder.replace("-", "")
        for method in ("vicreg", "simsiam"):
            for domain in ("real", "syn", "mix"):
                assert f"{folder}/{method}_{domain}_{dataset}" in ROW_CONFIGS
    for folder in ("cifar10", "digits"):
        for row in ABLATION:
            assert f"{folder}/ablation_{row}_{folder}" in ROW_CONFIGS
        for kind in ("vanilla", "squeeze", "sqsp"):
            assert f"{folder}/latent_{kind}_{folder}" in ROW_CONFIGS


@pytest.mark.parametrize("name", ROW_CONFIGS)
def test_row_config_composes_parses_and_carries_its_settings(name: str) -> None:
    raw = compose_row(name)
    cfg = parse_cfg(copy.deepcopy(raw))
    cfg = get_method(cfg.method).add_and_assert_specific_cfg(cfg)
    folder, config = name.split("/")
    kwargs = cfg.method_kwargs
    stem = config.removesuffix("_" + folder.replace("-", ""))
    if stem.startswith(("vicreg", "simsiam")):
        method, domain = stem.split("_")
        assert (cfg.method, kwargs.synthetic.domain) == (method, domain)
        assert kwargs.syn_ratio == 0.5
        # Same backbone, augmentations and budget as the dataset's sqsp row (Table 2).
        sqsp = compose_row(f"{folder}/sqsp_{config.split('_')[-1]}")
        for key in ("backbone", "optimizer", "scheduler", "max_epochs", "augmentations"):
            assert raw[key] == sqsp[key], key
    elif stem.startswith("ablation"):
        depth, augment, weights, ratio = ABLATION[stem.split("_")[1]]
        assert cfg.method == "sqsp" and kwargs.squeeze.depth == depth
        assert kwargs.augment_synthetic == augment and kwargs.syn_ratio == ratio
        assert (kwargs.sim_loss_weight, kwargs.var_loss_weight, kwargs.cov_loss_weight) == weights
    else:
        assert cfg.method == "sqsp"
        latent = stem.startswith("latent")
        assert kwargs.teacher.features == ("mapping$" if latent else r"synthesis\.b\d+$")
        if stem.endswith("vanilla"):
            assert kwargs.squeeze.depth == 0 and kwargs.var_loss_weight == 0


@pytest.mark.parametrize(
    "name", ["digits/latent_vanilla_digits", "digits/generator_vanilla_digits"]
)
def test_vanilla_rows_fit_the_bundled_teacher_widths(name: str) -> None:
    """Vanilla distillation regresses the concatenated features: the student's output width in
    the config must be the bundled teacher's (w: 64; blocks: 128 + 128 + 64)."""
    cfg = parse_cfg(compose_row(name, ["knn_eval.enabled=False"]))
    model = get_method("sqsp")(cfg)
    assert model.squeeze.out_dim == cfg.method_kwargs.proj_output_dim


def run_script(monkeypatch, script: str, *args: str) -> None:
    """``python benchmarks/<script>.py <args>`` in this process."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    monkeypatch.setattr(sys, "argv", [script, *args])
    __import__(script).main()


@pytest.mark.parametrize(
    ("script", "rows"),
    [
        ("table2", ["vicreg_mix_digits"]),
        ("table5", ["ablation_a_digits"]),
        ("bank_accuracy", ["sqsp_digits-bank-1024"]),
    ],
)
def test_table_scripts_quick(tmp_path, monkeypatch, script: str, rows: list[str]) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / f"{script}.json"
    run_script(
        monkeypatch, script, "--quick", "--rows", *rows, "--work-dir", "runs", "--out", str(out)
    )
    result = json.loads(out.read_text())
    assert [row["config"] for row in result["rows"]] == [row.split("-")[0] for row in rows]
    for row in result["rows"]:
        assert row["method"] in ("sqsp", "vicreg", "simsiam")
        assert row["domain"] in ("real", "syn", "real+syn")
        for key in ("linear_top1_mean", "linear10_top1_mean", "knn_top1_mean"):
            assert 0.0 <= row[key] <= 100.0
        assert row["output_std_mean"] >= 0.0 and row["output_std_normalized_mean"] >= 0.0
        assert len(row["seeds"]) == 1 and row["seeds"][0]["steps"] == 1
        (point,) = row["seeds"][0]["knn_curve"]  # one epoch: one validation
        assert point["epoch"] == 1 and point["train_seconds"] > 0
        assert 0.0 <= point["knn_top1"] <= 100.0
        assert set(row["minutes_to_50"]) <= {None, round(point["train_seconds"] / 60, 2)}
    assert {"raw pixels", "random-init ResNet18"} <= set(result["floors"])
    assert Path(tmp_path / f"{script}.md").read_text().count("\n|") >= len(rows) + 2
    assert Path(tmp_path / f"{script}.png").stat().st_size > 0


def test_teacher_curve_quick_trains_each_student_on_its_teacher_and_resumes(
    tmp_path, monkeypatch, capsys
) -> None:
    """Fig. 6 in miniature: a snapshot's students train on that snapshot (the bundled teacher's
    would be table2.py's runs), its quality is measured once and cached by file hash, and a
    rerun reuses every run and the quality (``--references`` keeps only the rows it names)."""
    monkeypatch.chdir(tmp_path)
    snapshot = str(REPO_ROOT / "benchmarks" / "teacher_snapshots" / "digits_teacher-005000.pt")
    flags = ["--quick", "--teachers", snapshot, "--work-dir", "runs", "--out", "curve.json"]
    run_script(monkeypatch, "teacher_curve", *flags)
    first = json.loads(Path("curve.json").read_text())
    (point,) = first["points"]
    assert point["teacher"] == snapshot
    assert point["quality"]["teacher_extra"]["iterations"] == 5000
    assert point["quality"]["fd_vs_train_split"]["teacher"] > 0.0
    for label in ("Squeeze", "Sq & Sp"):
        assert point[label]["overrides"] == [f"++method_kwargs.teacher.path={snapshot}"]
        assert 0.0 <= point[label]["knn_top1_mean"] <= 100.0
    assert [row["config"] for row in first["references"]] == [
        "vicreg_real_digits",
        "vicreg_mix_digits",
    ]
    teachers_used = {
        json.loads(path.read_text())["config"]["method_kwargs"].get("teacher", {}).get("path")
        for path in Path("runs").rglob("result.json")
        if "squeeze" in str(path) or "sqsp" in str(path)
    }
    assert teachers_used == {snapshot}
    assert Path("curve.png").stat().st_size > 0 and "Frechet" in Path("curve.md").read_text()
    cached = Path("runs/teacher_quality.json").read_text()
    capsys.readouterr()
    run_script(monkeypatch, "teacher_curve", *flags, "--references", "vicreg_real_digits")
    assert capsys.readouterr().out.count(": reused") == 3  # 2 students, 1 reference row
    assert Path("runs/teacher_quality.json").read_text() == cached
    again = json.loads(Path("curve.json").read_text())
    assert again["points"] == first["points"]
    assert again["references"] == first["references"][:1]
    monkeypatch.setattr(sys, "argv", ["teacher_curve", "--rows", "sqsp_digits"])
    with pytest.raises(SystemExit, match="--teachers"):
        __import__("teacher_curve").main()


def test_tables_reuse_finished_runs_and_retrain_changed_ones(tmp_path, monkeypatch, capsys) -> None:
    """An interrupted table resumes: a rerun in the same work dir, or with the ``--ledger`` of
    finished runs, reuses every finished run of an unchanged config, and retrains a run whose
    config changed (here the projector width)."""
    monkeypatch.chdir(tmp_path)
    quick = ["--quick", "--rows", "vicreg_real_digits", "--work-dir", "runs"]
    results = []
    given_floors = tmp_path / "floors.json"  # as digits_floors.py --out writes it
    given_floors.write_text(
        json.dumps({"rows": {"raw pixels": {"linear_top1": -1.0}, "supervised": {"knn_top1": 99}}})
    )
    for extra in ([], ["--floors", str(given_floors), "--ledger", "ledger.json"], ["--fresh"]):
        run_script(monkeypatch, "table2", *quick, *extra, "--out", "t.json")
        results.append(json.loads((tmp_path / "t.json").read_text())["rows"][0]["seeds"][0])
        floors = json.loads((tmp_path / "t.json").read_text())["floors"]
        assert floors["raw pixels"]["linear_top1"] >= 0.0  # computed, never the file's
        assert ("supervised" in floors) == ("--floors" in extra)  # rows the file adds
    printed = capsys.readouterr().out
    assert printed.count("VICReg seed 0: reused") == 1  # the second run only; --fresh trains
    assert results[1] == results[0]
    assert printed.count("VICReg seed 0: {") == 2
    # the ledger (filled by the reuse) serves another machine's work dir, and --fresh updated it
    moved = ["--quick", "--rows", "vicreg_real_digits", "--work-dir", "elsewhere"]
    run_script(monkeypatch, "table2", *moved, "--ledger", "ledger.json", "--out", "m.json")
    assert "reused ledger.json" in capsys.readouterr().out
    assert json.loads(Path("m.json").read_text())["rows"][0]["seeds"][0] == results[0] != {}
    assert "runs" not in Path("ledger.json").read_text()  # no folder of this machine
    record = json.loads(next(Path("runs").rglob("result.json")).read_text())
    assert record["config"]["method_kwargs"]["proj_output_dim"] == 16
    record["config"]["method_kwargs"]["proj_output_dim"] = 17  # as if the budget had changed
    next(Path("runs").rglob("result.json")).write_text(json.dumps(record))
    run_script(monkeypatch, "table2", *quick, "--out", "t.json")
    assert "reused" not in capsys.readouterr().out
    # --set: the same row with an override is another run, in a folder of its own
    run_script(monkeypatch, "table2", *quick, "--set", "++optimizer.lr=0.1", "--out", "t.json")
    assert "reused" not in capsys.readouterr().out
    row = json.loads((tmp_path / "t.json").read_text())["rows"][0]
    assert row["overrides"] == ["++optimizer.lr=0.1"]
    assert len(list(Path("runs").rglob("result.json"))) == 2


def test_a_diverged_run_is_recorded_counted_and_reused(tmp_path, monkeypatch, capsys) -> None:
    """A learning rate of 1e30 makes the second step's loss NaN: the table does not stop; the
    run is recorded as diverged (ledger and run folder), its row shows it and has no means, and
    a rerun reuses the record instead of training again."""
    monkeypatch.chdir(tmp_path)
    flags = ["--quick", "--rows", "vicreg_real_digits", "--max-steps", "2", "--ledger", "l.json"]
    flags += ["--set", "optimizer.lr=1e30", "--out", "t.json"]
    run_script(monkeypatch, "table2", *flags)
    row = json.loads(Path("t.json").read_text())["rows"][0]
    assert row["diverged"] == 1 and math.isnan(row["knn_top1_mean"])
    assert "at global step 1 (epoch 0)" in row["seeds"][0]["diverged"]
    assert "VICReg (1 of 1 seeds diverged)" in Path("t.md").read_text()
    assert "diverged" in next(iter(json.loads(Path("l.json").read_text()).values()))["result"]
    capsys.readouterr()
    run_script(monkeypatch, "table2", *flags)
    assert "VICReg seed 0: reused" in capsys.readouterr().out


def test_an_unknown_row_is_refused_before_any_run(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit, match=r"--rows vicreg_real: not rows of this table"):
        run_script(monkeypatch, "table2", "--rows", "sqsp_digits", "vicreg_real")
    assert not Path("table_runs").exists()


def test_minutes_to_reads_the_first_epoch_at_the_level(monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    from table_rows import minutes_to

    curve = [
        {"epoch": 1, "train_seconds": 60.0, "knn_top1": 40.0},
        {"epoch": 2, "train_seconds": 120.0, "knn_top1": 81.0},
        {"epoch": 3, "train_seconds": 180.0, "knn_top1": 79.0},
    ]
    assert minutes_to(curve, 50) == 2.0
    assert minutes_to(curve, 80) == 2.0
    assert minutes_to(curve, 85) is None


def test_full_table_budget_keeps_every_row_width(monkeypatch, tmp_path) -> None:
    """The table budget forces no width: each row trains at its own config's widths."""
    monkeypatch.syspath_prepend(str(REPO_ROOT / "benchmarks"))
    from table2 import FULL, ROWS
    from table_rows import compose_row as compose_table_row

    for row in ROWS:
        own = compose_row(f"digits/{row.config}").method_kwargs
        budgeted = compose_table_row(row, FULL, 0, tmp_path).method_kwargs
        for key in ("proj_hidden_dim", "proj_output_dim", "pred_hidden_dim"):
            assert budgeted.get(key) == own.get(key), (row.config, key)
        assert budgeted.get("squeeze") == own.get("squeeze")


def test_stability_probe_records_steps_and_the_divergence_step(tmp_path, monkeypatch) -> None:
    small = ["optimizer.batch_size=8", "method_kwargs.proj_output_dim=16", "data.num_workers=0"]
    common = ["--rows", "vicreg_real_digits", "--steps", "2", "--seeds", "0", "--epochs", "1"]
    run_script(monkeypatch, "stability", *common, "--set", *small, "--out", str(tmp_path / "a"))
    (run,) = json.loads((tmp_path / "a").read_text())["rows"]["vicreg_real_digits"]
    assert run["diverged_at"] is None and [s["step"] for s in run["steps"]] == [1, 2]
    assert all(s["grad_norm"] > 0 and "train_vicreg_real/cov" in s for s in run["steps"])
    huge = ["--warmup-fraction", "0", "--set", *small, "optimizer.lr=1e12"]  # far past the edge
    run_script(monkeypatch, "stability", *common, *huge, "--out", str(tmp_path / "b"))
    (run,) = json.loads((tmp_path / "b").read_text())["rows"]["vicreg_real_digits"]
    assert run["diverged_at"] is not None and run["diverged_at"] == len(run["steps"]) + 1
