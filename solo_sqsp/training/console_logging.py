"""Console logging of the command-line entry points (``main_pretrain.py``, ``main_linear.py``,
``main_knn.py``): one ``[logger] message`` line per record, the package's INFO lines shown."""

from __future__ import annotations

import logging
import logging.config

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "[%(name)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"level": "WARNING", "handlers": ["console"]},
}


def configure_console_logging() -> None:
    """Call first in a Hydra ``main``: Hydra's job logging, which the configs disable, disables
    every logger that existed by then (the package's, made at import); this enables them again
    and prints to the console, ``solo_sqsp`` at INFO."""
    logging.config.dictConfig(LOGGING)
    logging.getLogger("solo_sqsp").setLevel(logging.INFO)
