"""Logging for stage scripts: one log file per rule run, also echoed to stderr."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path


def stage_logger(name: str, log_file: str | Path | None = None) -> logging.Logger:
    """A logger writing timestamped lines to ``log_file`` (if given) and stderr."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()  # a second call (tests, notebooks) must not leak the first log file
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
    log.info("environment: %s", environment_line())
    log.info("running on: %s", placement_line())
    return log


def placement_line() -> str:
    """The host and, under SLURM, the job id: which cluster job (sacct, its SLURM log) ran the
    stage, or that it ran outside SLURM (a local rule runs on the submitting host)."""
    job = os.environ.get("SLURM_JOB_ID")
    return f"host {platform.node()}, " + (f"SLURM job {job}" if job else "not a SLURM job")


def environment_line() -> str:
    """The code's commit, Python and the installed versions of the packages the provenance
    page reports: each stage's log records what ran it (a partial rerun's stages can run
    other code than the rest, and under per-stage conda environments versions differ)."""
    installed = {name: version for name, version in package_versions().items() if version != "not installed"}
    return ", ".join([f"code {code_commit()}", f"python {platform.python_version()}",
                      *(f"{name} {v}" for name, v in installed.items())])


def code_commit(directory: str | Path | None = None) -> str:
    """The git commit of the checkout holding ``directory`` (default: this package), marked
    ``-dirty`` when tracked files differ; ``unknown`` outside git."""
    where = Path(directory) if directory is not None else Path(__file__).resolve().parent

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=where, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


FAILURE_MARK = "stage failed:"


def log_uncaught(log: logging.Logger) -> None:
    """Send an uncaught exception to the stage log too, so the log says why the stage failed.
    A second call replaces the first one's hook instead of chaining it (one failure, one line)."""
    previous = getattr(sys.excepthook, "_before_stage_log", sys.excepthook)

    def hook(kind: type[BaseException], error: BaseException, tb: object) -> None:
        log.error("%s %s", FAILURE_MARK, error, exc_info=(kind, error, tb))  # type: ignore[arg-type]
        previous(kind, error, tb)  # type: ignore[arg-type]

    hook._before_stage_log = previous  # type: ignore[attr-defined]
    sys.excepthook = hook


def duration_text(seconds: float) -> str:
    """``1h05m`` or ``4m09s``."""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def progress_line(done: int, total: int | None, rate: float, unit: str) -> str:
    """A text progress bar with rate and ETA: ``[###...] 120/300 (40.0%) 12.30 img/s ETA 0m14s``."""
    if not total:
        return f"{done} done {rate:.2f} {unit}/s"
    filled = int(30 * min(done, total) / total)
    eta = duration_text(max(total - done, 0) / rate) if rate > 0 else "?"
    return f"[{'#' * filled}{'.' * (30 - filled)}] {done}/{total} ({done / total:.1%}) {rate:.2f} {unit}/s ETA {eta}"


class Throttle:
    """True at most once every ``seconds`` (for progress lines in long loops)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.last = time.monotonic()

    def due(self) -> bool:
        now = time.monotonic()
        if now - self.last < self.seconds:
            return False
        self.last = now
        return True


# What the provenance page and every stage log report.
PACKAGES = (
    "byol-discovery",
    "torch",
    "torchvision",
    "numpy",
    "scikit-learn",
    "hdbscan",
    "h5py",
    "astropy",
    "pandas",
    "snakemake",
    "firstgalaxydata",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions
