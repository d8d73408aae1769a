"""Retrain: Snakemake brings the dataset's active_learning outputs up to date with the same
config arguments as the run (so its log, benchmark and provenance stay true), one run at a time."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

OUTPUT_TAIL = 4000  # characters of Snakemake's output kept for the page


class Retrainer:
    """Runs ``snakemake <targets>`` in the background; :meth:`status` says how it went."""

    def __init__(self, command: Sequence[str], rule_log: Path | None = None) -> None:
        self.command = list(command)
        self.rule_log = rule_log
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"state": "idle", "message": "", "runs": 0}

    def start(self) -> bool:
        """Start a run; False (and nothing started) while one is running."""
        with self._lock:
            if self._state["state"] == "running":
                return False
            self._state = {"state": "running", "message": "", "runs": self._state["runs"], "started": time.time()}
        threading.Thread(target=self._run, daemon=True).start()
        return True

    def _run(self) -> None:
        try:
            result = subprocess.run(self.command, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            output = (result.stdout + result.stderr)[-OUTPUT_TAIL:]
            if result.returncode == 0:
                state = {"state": "done", "message": "the ranking is up to date"}
            else:
                state = {"state": "error", "message": self._error_text(output)}
        except OSError as error:
            state = {"state": "error", "message": f"cannot run {self.command[0]}: {error}"}
        with self._lock:
            self._state = {**state, "runs": self._state["runs"] + 1,
                           "seconds": round(time.time() - self._state["started"], 1)}

    def _error_text(self, output: str) -> str:
        """The rule's own log where it wrote one (the error a person can act on), then Snakemake's output."""
        parts = []
        if self.rule_log is not None and self.rule_log.is_file():
            lines = self.rule_log.read_text(errors="replace").splitlines()
            errors = [line for line in lines if "ERROR" in line or "Error" in line]
            parts.append("\n".join((errors or lines)[-10:]))
        parts.append(output)
        return "\n---\n".join(part for part in parts if part.strip())

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {key: value for key, value in self._state.items() if key != "started"}


def snakemake_command(snakefile: Path, directory: Path, targets: Sequence[str], config_args: Sequence[str],
                      cores: int = 1) -> list[str]:
    """The Snakemake command line of a retrain (the config arguments passed on as given)."""
    return [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(directory),
            "--cores", str(cores), *config_args, *targets]
