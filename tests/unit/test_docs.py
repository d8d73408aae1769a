"""The docs site's generated parts (docs/hooks/generated.py): the settings reference and the package layout."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("generated", REPO / "docs" / "hooks" / "generated.py")
generated = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generated)

SCHEMA = yaml.safe_load((REPO / "workflow" / "schemas" / "config.schema.yaml").read_text())


def settings(node: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Every setting below a node, by dotted name."""
    found = {}
    for name, child in node.get("properties", {}).items():
        found[prefix + name] = child
        found.update(settings(child, f"{prefix}{name}."))
    return found


STAGE_SETTINGS = {
    name: node
    for name, node in settings(SCHEMA).items()
    if "." in name and not name.startswith("datasets")
}


def page(name: str, markdown: str) -> str:
    return generated.on_page_markdown(markdown, SimpleNamespace(file=SimpleNamespace(src_uri=name)))


def test_every_stage_setting_has_a_row_with_its_default_and_description() -> None:
    reference = page("settings.md", "# Settings\n\n{{ settings_reference }}\n")
    for name, node in STAGE_SETTINGS.items():
        row = next((line for line in reference.splitlines() if line.startswith(f"| `{name}` |")), None)
        assert row is not None, f"{name} missing from the settings reference"
        if "default" in node:
            assert f"| `{json.dumps(node['default'])}` |" in row, row
    row = "| `anomaly.n_estimators` | integer | `200` | trees of the isolation forest |"
    assert row in reference


@pytest.mark.parametrize("name", sorted(STAGE_SETTINGS))
def test_every_stage_setting_is_described_in_the_schema(name: str) -> None:
    """The reference is written from these descriptions: a setting without one is a blank row."""
    assert STAGE_SETTINGS[name].get("description"), f"{name} has no description in config.schema.yaml"


def test_the_layout_names_every_module_of_the_package() -> None:
    layout = page("development.md", "{{ package_layout }}")
    package = REPO / "workflow" / "byol_discovery"
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        assert f"[`{module}`](api.md#{module})" in layout
    assert "| [`byol_discovery.cli`](api.md#byol_discovery.cli) | The `byol-discovery` console command" in layout


def test_a_page_that_lost_its_marker_stops_the_build() -> None:
    with pytest.raises(ValueError, match="settings_reference"):
        page("settings.md", "# Settings\n")


def test_other_pages_pass_unchanged() -> None:
    assert page("index.md", "{{ settings_reference }}") == "{{ settings_reference }}"
