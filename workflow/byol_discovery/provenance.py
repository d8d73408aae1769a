"""Provenance of a run: the resolved config, the code's git commit, package versions, devices,
and which of the package's source files each stage runs."""

from __future__ import annotations

import ast
import html
import platform
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from byol_discovery.io.atomic import write_text_atomic
from byol_discovery.logs import package_versions

STYLE = "body{font-family:sans-serif} th{text-align:left;padding-right:1em} td,th{border-bottom:1px solid #ddd}"


def source_files(*roots: str | Path) -> list[Path]:
    """The package's modules that the files ``roots`` import, directly or through each other,
    with every import statement counted (also those inside functions), and the roots
    themselves. Package ``__init__`` files only re-export and are not followed, so a script
    that imports ``byol_discovery.stages`` depends on the stage module it names as a root,
    not on every stage. As a rule's inputs these make an edit rerun exactly the stages that
    run the edited code (Snakemake tracks a rule's script, not what it imports)."""
    package = Path(__file__).resolve().parent
    found: set[Path] = set()
    todo = [Path(root).resolve() for root in roots]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        for name in _imported_modules(path):
            module = package.joinpath(*name.split(".")[1:]).with_suffix(".py")
            if module.is_file():
                todo.append(module)
    return sorted(found)


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of the byol_discovery modules (or packages) that ``path`` imports."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a import b``: b is a module of package a, or a name defined in module a.
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("byol_discovery.")}


def git_commit(directory: str | Path) -> str:
    """HEAD's commit, marked ``-dirty`` when tracked files differ; ``unknown`` outside git."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        return commit + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def training_devices(checkpoints: Iterable[str | Path]) -> dict[str, str]:
    """Which device trained each checkpoint, read back from the checkpoint itself."""
    import torch

    devices = {}
    for path in checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        devices[str(path)] = str(checkpoint.get("device", "not recorded"))
    return devices


def provenance(config: Mapping[str, Any], checkpoints: Iterable[str | Path], workdir: str | Path) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git commit": git_commit(workdir),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "training device": training_devices(checkpoints),
        "config": dict(config),
    }


def _rows(mapping: Mapping[str, Any]) -> str:
    return "".join(
        f"<tr><th>{html.escape(str(key))}</th><td>{html.escape(str(value))}</td></tr>" for key, value in mapping.items()
    )


def write_provenance(
    path: str | Path, config: Mapping[str, Any], checkpoints: Iterable[str | Path], workdir: str | Path
) -> None:
    """An HTML page (shown in the Snakemake report) with the run's provenance."""
    record = provenance(config, checkpoints, workdir)
    summary = {key: record[key] for key in ("created", "git commit", "python", "platform")}
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Provenance</title>
<style>{STYLE}</style>
</head><body>
<h2>Run</h2><table>{_rows(summary)}</table>
<h2>Training device</h2><table>{_rows(record["training device"])}</table>
<h2>Package versions</h2><table>{_rows(record["packages"])}</table>
<h2>Resolved configuration</h2><pre>{html.escape(yaml.safe_dump(record["config"], sort_keys=False))}</pre>
</body></html>
"""
    write_text_atomic(path, page)
