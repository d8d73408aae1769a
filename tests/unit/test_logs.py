"""Stage logs: where a failing stage says why."""

import logging
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
from byol_discovery.logs import FAILURE_MARK, code_commit, stage_logger


@pytest.fixture
def root_logging():
    """stage_logger replaces the root logger's handlers: put pytest's back afterwards."""
    root_handlers = list(logging.getLogger().handlers)
    yield
    for handler in list(logging.getLogger().handlers):
        logging.getLogger().removeHandler(handler)
        handler.close()
    for handler in root_handlers:
        logging.getLogger().addHandler(handler)


def _flush() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()


def test_a_second_stage_logger_closes_the_first_and_logs_a_failure_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, root_logging: None
) -> None:
    reached: list[str] = []
    monkeypatch.setattr(sys, "excepthook", lambda kind, error, tb: reached.append(str(error)))
    stage_logger("first", tmp_path / "first.log")
    first_file = next(h for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler))
    stage_logger("second", tmp_path / "second.log")
    assert first_file.stream is None, "the first log file is closed"
    error = RuntimeError("disk full")
    sys.excepthook(RuntimeError, error, None)
    _flush()
    assert (tmp_path / "second.log").read_text().count(FAILURE_MARK) == 1
    assert FAILURE_MARK not in (tmp_path / "first.log").read_text()
    assert reached == ["disk full"], "the original hook still runs, once"


def test_a_stage_log_starts_with_its_own_environment(tmp_path: Path, root_logging: None) -> None:
    """Under per-stage conda environments, or after a partial rerun with newer code, the
    provenance page cannot know each stage's versions and commit; the stage's log does."""
    import torch

    stage_logger("stage", tmp_path / "stage.log")
    _flush()
    first_line = (tmp_path / "stage.log").read_text().splitlines()[0]
    assert f"environment: code {code_commit()}, python 3." in first_line
    assert f"torch {torch.__version__.split('+')[0]}" in first_line


def test_a_stage_log_names_its_slurm_job(tmp_path: Path, root_logging: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a cluster, the log says which job ran the stage (to find it in sacct and its SLURM log)."""
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    stage_logger("stage", tmp_path / "on_slurm.log")
    monkeypatch.delenv("SLURM_JOB_ID")
    stage_logger("stage", tmp_path / "local.log")
    _flush()
    assert f"running on: host {platform.node()}, SLURM job 4242" in (tmp_path / "on_slurm.log").read_text()
    assert "running on: host" in (tmp_path / "local.log").read_text()
    assert "not a SLURM job" in (tmp_path / "local.log").read_text()


def test_the_code_commit_is_read_from_git_and_marked_dirty(tmp_path: Path) -> None:
    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    assert code_commit(tmp_path) == "unknown", "outside git"
    git("init", "-q")
    (tmp_path / "module.py").write_text("x = 1\n")
    git("add", "module.py")
    git("commit", "-qm", "first")
    commit = code_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    (tmp_path / "module.py").write_text("x = 2\n")
    assert code_commit(tmp_path) == f"{commit}-dirty"
