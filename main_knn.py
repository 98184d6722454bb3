"""Weighted k-NN evaluation of a pretrained backbone.

``python main_knn.py [--config-name NAME] pretrained_feature_extractor=PATH [key=value ...]``.

``NAME`` is looked up under ``scripts/knn/`` (e.g. ``knn_cifar10``); the default is the embedded
``knn_digits``. Prints accuracy for every ``knn.k`` x ``knn.temperature`` x
``knn.distance_function`` setting, as solo-learn's main_knn does, and writes them as JSON. A bad
config, checkpoint or dataset stops the run before feature extraction with one line.
"""

import sys

import hydra
from omegaconf import DictConfig

from solo_sqsp.config import ConfigError
from solo_sqsp.config_lookup import with_config_path
from solo_sqsp.data import DataConfigError
from solo_sqsp.evaluation import CheckpointError, run_knn
from solo_sqsp.training.console_logging import configure_console_logging

DEFAULT_CONFIG = "knn_digits"


@hydra.main(version_base="1.2", config_path=None)
def main(cfg: DictConfig) -> None:
    configure_console_logging()
    try:
        run_knn(cfg)
    except (ConfigError, CheckpointError, DataConfigError) as error:
        raise SystemExit(f"main_knn.py: {error}") from error


if __name__ == "__main__":
    sys.argv = with_config_path(sys.argv, "knn", DEFAULT_CONFIG)
    main()
