"""Pretrain with solo-sqsp: ``python main_pretrain.py [--config-name NAME] [key=value ...]``.

``NAME`` is looked up under ``scripts/pretrain/`` (e.g. ``sqsp_cifar10``); the default is the
embedded ``sqsp_digits``. Overrides are Hydra's, as in solo-learn.
"""

import logging.config
import sys

import hydra
from omegaconf import DictConfig

import solo_sqsp  # noqa: F401  (registers ``sqsp`` in solo-learn's METHODS when importable)
from solo_sqsp.config_lookup import with_config_path
from solo_sqsp.pretrain import run_pretrain

DEFAULT_CONFIG = "sqsp_digits"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(name)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "WARNING", "handlers": ["console"]},
}


@hydra.main(version_base="1.2", config_path=None)
def main(cfg: DictConfig) -> None:
    # After Hydra's job logging (disabled in the configs, which also mutes existing loggers).
    logging.config.dictConfig(LOGGING)
    logging.getLogger("solo_sqsp").setLevel(logging.INFO)
    run_pretrain(cfg)


if __name__ == "__main__":
    sys.argv = with_config_path(sys.argv, "pretrain", DEFAULT_CONFIG)
    main()
