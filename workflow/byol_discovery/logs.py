"""Logging for stage scripts: one log file per rule run, also echoed to stderr."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def stage_logger(name: str, log_file: str | Path | None = None) -> logging.Logger:
    """A logger writing timestamped lines to ``log_file`` (if given) and stderr."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_file, mode="w"))
    for handler in handlers:
        handler.setFormatter(formatter)
        root.addHandler(handler)
    logging.captureWarnings(True)
    log = logging.getLogger(name)
    log_uncaught(log)
    return log


def log_uncaught(log: logging.Logger) -> None:
    """Send an uncaught exception to the stage log too, so the log says why the stage failed."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], error: BaseException, tb: object) -> None:
        log.error("stage failed: %s", error, exc_info=(kind, error, tb))  # type: ignore[arg-type]
        previous(kind, error, tb)  # type: ignore[arg-type]

    sys.excepthook = hook
