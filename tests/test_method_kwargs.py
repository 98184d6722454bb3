"""``method_kwargs`` keys: a typo is refused before any run folder, an inherited key that the
method does not read is named in a warning (``solo_sqsp.methods.method_kwargs``)."""

from __future__ import annotations

import logging

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig
from test_failures import expect_early_failure, files  # noqa: F401 (fixture)

from solo_sqsp.config import ConfigError
from solo_sqsp.config_lookup import REPO_ROOT
from solo_sqsp.methods.method_kwargs import check_method_kwargs, read_keys

DIGITS = REPO_ROOT / "scripts" / "pretrain" / "digits"


def digits_config(name: str, *overrides: str) -> DictConfig:
    with initialize_config_dir(config_dir=str(DIGITS), version_base="1.2"):
        return compose(name, overrides=list(overrides))


def test_a_typo_fails_before_the_run_folder(files, tmp_path) -> None:  # noqa: F811
    message = expect_early_failure(
        files, tmp_path, ["+method_kwargs.sim_los_weight=3"], ConfigError, "sim_los_weight"
    )
    assert "sim_loss_weight" in message  # the keys the method reads are listed


@pytest.mark.parametrize(
    "override", ["+method_kwargs.squeeze.dept=2", "+method_kwargs.teacher.pth=x.pkl"]
)
def test_a_typo_inside_a_group_is_refused(override) -> None:
    with pytest.raises(ConfigError, match=override.split("=")[0].removeprefix("+method_kwargs.")):
        check_method_kwargs(digits_config("sqsp_digits", override))


def test_every_key_of_the_default_config_is_read() -> None:
    reads = read_keys("sqsp", "real")
    cfg = digits_config("sqsp_digits")
    assert {"syn_ratio", "squeeze.depth", "teacher.path", "teacher.features"} <= reads
    check_method_kwargs(cfg)  # no error


def test_keys_the_method_does_not_read_are_named(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="solo_sqsp.methods.method_kwargs"):
        check_method_kwargs(digits_config("vicreg_real_digits"))
    (record,) = caplog.records
    assert "'squeeze'" in record.getMessage() and "'teacher'" in record.getMessage()
    assert "sim_loss_weight" not in record.getMessage()  # vicreg reads its weights
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="solo_sqsp.methods.method_kwargs"):
        check_method_kwargs(digits_config("vicreg_syn_digits"))
    assert "'teacher'" not in caplog.records[0].getMessage()  # read on the syn domain


def test_methods_served_by_solo_learn_alone_are_not_checked() -> None:
    assert read_keys("byol", "real") is None
    check_method_kwargs(digits_config("sqsp_digits", "method=byol", "+method_kwargs.anything=1"))
