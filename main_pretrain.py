"""Pretrain with solo-sqsp: ``python main_pretrain.py [--config-name NAME] [key=value ...]``.

``NAME`` is looked up under ``scripts/pretrain/`` (e.g. ``sqsp_cifar10``); the default is the
embedded ``sqsp_digits``. Overrides are Hydra's, as in solo-learn. A bad config, dataset or
teacher stops the run before training with one line naming what is wrong (README, "Failure
modes"); so do a non-finite loss and a failed checkpoint write, which keep earlier checkpoints.
"""

import sys

import hydra
from omegaconf import DictConfig

import solo_sqsp  # noqa: F401  (registers ``sqsp`` in solo-learn's METHODS when importable)
from solo_sqsp.config_lookup import with_config_path
from solo_sqsp.training.checkpoint_io import CheckpointWriteError
from solo_sqsp.training.console_logging import configure_console_logging
from solo_sqsp.training.nonfinite import NonFiniteError
from solo_sqsp.training.pretrain import run_pretrain

DEFAULT_CONFIG = "sqsp_digits"


@hydra.main(version_base="1.2", config_path=None)
def main(cfg: DictConfig) -> None:
    configure_console_logging()
    try:
        run_pretrain(cfg)
    except (ValueError, KeyError, NonFiniteError, CheckpointWriteError) as error:
        # Every check of config, data and teacher raises a ValueError subclass (KeyError: an
        # unknown method); the message names the fix, a traceback would only hide it.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise SystemExit(f"main_pretrain.py: {type(error).__name__}: {message}") from error


if __name__ == "__main__":
    sys.argv = with_config_path(sys.argv, "pretrain", DEFAULT_CONFIG)
    main()
