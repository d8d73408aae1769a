"""The `byol-discovery` console command: subcommands, what they pass to Snakemake, errors."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
import tomllib
from byol_discovery import cli


@pytest.fixture
def snakemake_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The commands the subcommands would run, recorded instead of run."""
    calls: list[list[str]] = []
    monkeypatch.setattr(subprocess, "call", lambda command: calls.append(command) or 0)
    return calls


def test_run_is_snakemake_on_the_projects_snakefile_with_the_arguments_passed_through(
    snakemake_calls: list[list[str]],
) -> None:
    assert cli.main(["run", "-n", "--configfile", "config/mirabest.yaml"]) == 0
    (command,) = snakemake_calls
    assert command[:3] == [sys.executable, "-m", "snakemake"]
    assert command[command.index("--snakefile") + 1] == str(cli.SNAKEFILE)
    assert cli.SNAKEFILE.is_file()
    assert command[-5:] == ["--cores", "all", "-n", "--configfile", "config/mirabest.yaml"]


def test_report_writes_the_named_page_or_results_report_html(snakemake_calls: list[list[str]]) -> None:
    cli.main(["report"])
    cli.main(["report", "out/page.html", "--configfile", "my.yaml"])
    assert snakemake_calls[0][-2:] == ["--report", "results/report.html"]
    assert snakemake_calls[1][-4:] == ["--report", "out/page.html", "--configfile", "my.yaml"]


def test_snakemakes_exit_status_is_the_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "call", lambda command: 1)
    assert cli.main(["run"]) == 1


def test_help_lists_every_subcommand_with_its_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 0
    out = capsys.readouterr().out
    summaries = {line.split()[0]: " ".join(line.split()[1:]) for line in out.split("commands:\n")[1].splitlines()}
    assert summaries["run"].startswith("Run the pipeline")
    assert summaries["report"].startswith("Write the Snakemake report")
    assert summaries["similar"].startswith("List the objects most like given ones")


def test_an_unknown_subcommand_is_named_with_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["lable"]) == 2
    err = capsys.readouterr().err
    assert "unknown command 'lable'" in err and "run, report" in err


def test_a_new_subcommand_is_one_registered_function(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "SUBCOMMANDS", dict(cli.SUBCOMMANDS))

    @cli.subcommand
    def similar_objects(args: list[str]) -> int:
        """Objects like a given one."""
        print("similar to", *args)
        return 0

    assert cli.main(["similar-objects", "sim000045"]) == 0
    assert "similar to sim000045" in capsys.readouterr().out
    cli.main(["--help"])
    assert "similar-objects  Objects like a given one." in capsys.readouterr().out


def test_a_missing_snakefile_is_explained(
    monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "SNAKEFILE", tmp_path / "Snakefile")
    assert cli.main(["run"]) == 2
    assert "pip install -e ." in capsys.readouterr().err


def test_the_installed_command_is_this_main() -> None:
    pyproject = tomllib.loads((cli.SNAKEFILE.parent / "pyproject.toml").read_text())
    module, function = pyproject["project"]["scripts"]["byol-discovery"].split(":")
    assert getattr(importlib.import_module(module), function) is cli.main
