"""A file of finished table runs that can be committed, so a table survives a change of machine.

``--ledger PATH`` of ``table2.py`` / ``table5.py`` (any script on ``table_rows``): every finished
(row, seed) is recorded under ``<row name>/seed<k>`` with its probe results and a digest of its
composed config (``checkpoint.dir``, a folder of this machine, left out); a later table reuses an
entry only when the digest matches, so a changed config retrains. Writers take a lock, so tables
run side by side can share one ledger.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def config_digest(config: dict[str, Any]) -> str:
    """SHA-256 of ``config`` as sorted JSON, without ``checkpoint.dir``."""
    portable = json.loads(json.dumps(config))
    portable.get("checkpoint", {}).pop("dir", None)
    return hashlib.sha256(json.dumps(portable, sort_keys=True).encode()).hexdigest()


class RunLedger:
    """Finished runs in one JSON file: ``{key: {"config_sha256", "result"}}``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _entries(self) -> dict[str, Any]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def result(self, key: str, config: dict[str, Any]) -> dict[str, Any] | None:
        """The results recorded under ``key`` for this very ``config``, else None."""
        entry = self._entries().get(key)
        if entry is None or entry["config_sha256"] != config_digest(config):
            return None
        return entry["result"]

    def record(self, key: str, config: dict[str, Any], result: dict[str, Any]) -> None:
        """Add or replace ``key``: read, update and atomically rewrite the file under a lock."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:16]
        with open(Path(tempfile.gettempdir()) / f"run_ledger_{name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            entries = self._entries()
            entries[key] = {"config_sha256": config_digest(config), "result": result}
            partial = self.path.with_name(f".{self.path.name}.partial")
            partial.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
            os.replace(partial, self.path)
