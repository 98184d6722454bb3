"""``ResumableCSVLogger``: Lightning's CSV logger for a run folder that a resumed run reuses.

Lightning's ``CSVLogger`` deletes ``metrics.csv`` when its folder is not empty, so resuming a
run into its own folder would lose every metric logged before the interruption, and it flushes
only every 100 steps, so a killed run loses the rows it had not written yet. This logger writes
every row when it is logged and, resuming from a checkpoint saved at global step ``s``, keeps
the rows logged before step ``s`` (later rows belong to training the resumed run repeats).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger

METRICS_FILE = "metrics.csv"


class ResumableCSVLogger(CSVLogger):
    """``metrics.csv`` (and ``hparams.yaml``) directly in ``run_dir``; ``resumed_step``: the
    global step of the checkpoint the run resumes from (None: a fresh run)."""

    def __init__(self, run_dir: Path, resumed_step: int | None = None) -> None:
        super().__init__(run_dir, name="", version="", flush_logs_every_n_steps=1)
        self._resumed_step = resumed_step

    @property
    def experiment(self) -> Any:
        if self._experiment is not None:
            return self._experiment
        earlier = self._rows_before_resume()  # read before Lightning's writer deletes the file
        experiment = super().experiment
        for row in earlier:
            step = int(float(row.pop("step")))
            experiment.log_metrics(row, step)
        return experiment

    def _rows_before_resume(self) -> list[dict[str, str]]:
        path = Path(self.log_dir) / METRICS_FILE
        if self._resumed_step is None or not path.is_file():
            return []
        with path.open(newline="") as handle:
            rows = list(csv.DictReader(handle))
        return [
            {key: value for key, value in row.items() if value not in ("", None)}
            for row in rows
            if row.get("step") and int(float(row["step"])) < self._resumed_step
        ]
