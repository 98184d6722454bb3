"""Linear evaluation of a pretrained backbone.

``python main_linear.py [--config-name NAME] pretrained_feature_extractor=PATH [key=value ...]``.

``NAME`` is looked up under ``scripts/linear/`` (e.g. ``linear_cifar10``); the default is the
embedded ``linear_digits``. ``PATH`` is a checkpoint written by ``main_pretrain.py`` (or solo-learn)
or the run folder holding it. Overrides are Hydra's, as in solo-learn. A bad config, checkpoint or
dataset stops the run before training with one line naming what is wrong.
"""

import sys

import hydra
from omegaconf import DictConfig

from solo_sqsp.config import ConfigError
from solo_sqsp.config_lookup import with_config_path
from solo_sqsp.data import DataConfigError
from solo_sqsp.evaluation import CheckpointError, run_linear
from solo_sqsp.training.console_logging import configure_console_logging

DEFAULT_CONFIG = "linear_digits"


@hydra.main(version_base="1.2", config_path=None)
def main(cfg: DictConfig) -> None:
    configure_console_logging()
    try:
        run_linear(cfg)
    except (ConfigError, CheckpointError, DataConfigError) as error:
        raise SystemExit(f"main_linear.py: {error}") from error


if __name__ == "__main__":
    sys.argv = with_config_path(sys.argv, "linear", DEFAULT_CONFIG)
    main()
