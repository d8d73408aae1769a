"""Provenance of a run: the resolved config, the code's git commit, package versions and
the training devices."""

from __future__ import annotations

import html
import platform
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from byol_discovery.io.atomic import write_text_atomic
from byol_discovery.logs import code_commit, package_versions

STYLE = "body{font-family:sans-serif} th{text-align:left;padding-right:1em} td,th{border-bottom:1px solid #ddd}"


def training_devices(checkpoints: Iterable[str | Path]) -> dict[str, str]:
    """Which device trained each checkpoint, read back from the checkpoint itself."""
    import torch

    devices = {}
    for path in checkpoints:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        devices[str(path)] = str(checkpoint.get("device", "not recorded"))
    return devices


def provenance(config: Mapping[str, Any], checkpoints: Iterable[str | Path]) -> dict[str, Any]:
    return {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git commit": code_commit(),
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


def write_provenance(path: str | Path, config: Mapping[str, Any], checkpoints: Iterable[str | Path]) -> None:
    """An HTML page (shown in the Snakemake report) with the run's provenance: the config and
    commit of the run that wrote it (each stage's log names the commit that ran that stage)."""
    record = provenance(config, checkpoints)
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
