"""mkdocs hook: the parts of the docs that are written from the code, so they cannot drift from it.

- `{{ settings_reference }}` (docs/settings.md): every setting of
  workflow/schemas/config.schema.yaml, the schema the workflow validates against, one table
  row each (name, type, default, description), one table per top-level section.
- `{{ package_layout }}` (docs/development.md): every module of the package with the first
  sentence of its docstring.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / "workflow"
SCHEMA = WORKFLOW / "schemas" / "config.schema.yaml"
PACKAGE = WORKFLOW / "byol_discovery"


def kind(node: dict[str, Any]) -> str:
    """The setting's type as the schema states it: a list of allowed values, or its JSON type(s)."""
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(value)}`" for value in node["enum"])
    types = node.get("type", "any")
    return " or ".join(types) if isinstance(types, list) else types


def cell(text: str) -> str:
    """Text fit for one table cell: one line, pipes and angle brackets (`<dataset>`) escaped."""
    return " ".join(str(text).split()).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def rows(properties: dict[str, Any], prefix: str) -> list[str]:
    """One row per setting, nested objects' settings after their own row, dotted names."""
    lines = []
    for name, node in properties.items():
        dotted = f"{prefix}{name}"
        default = f"`{json.dumps(node['default'])}`" if "default" in node else ""
        lines.append(f"| `{dotted}` | {kind(node)} | {default} | {cell(node.get('description', ''))} |")
        if "properties" in node and name != "datasets":
            lines.extend(rows(node["properties"], f"{dotted}."))
    return lines


def reference(schema: dict[str, Any]) -> str:
    """Markdown tables of every setting: the top-level settings, then one table per stage section."""
    header = ["| setting | type | default | what |", "| --- | --- | --- | --- |"]
    top = {name: node for name, node in schema["properties"].items() if "properties" not in node}
    parts = ["## Top level", "", *header, *rows(top, ""), ""]
    datasets = schema["properties"]["datasets"]["additionalProperties"]["properties"]
    parts += ["## `datasets.<name>.source`", "", cell(datasets["source"]["description"]), "", *header]
    parts += [*rows(datasets["source"]["properties"], "source."), ""]
    for section, node in schema["properties"].items():
        if "properties" in node and section != "datasets":
            parts += [f"## `{section}`", "", *header, *rows(node["properties"], f"{section}."), ""]
    return "\n".join(parts)


def layout(package: Path) -> str:
    """A table of the package's modules, each with its docstring's first sentence."""
    lines = ["| module | what |", "| --- | --- |"]
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        first_paragraph = " ".join(docstring.split("\n\n")[0].split())
        summary = first_paragraph.split(". ")[0].rstrip(".")
        lines.append(f"| [`{name}`](api.md#{name}) | {cell(summary)} |")
    return "\n".join(lines)


GENERATED = {
    "settings.md": ("{{ settings_reference }}", lambda: reference(yaml.safe_load(SCHEMA.read_text()))),
    "development.md": ("{{ package_layout }}", lambda: layout(PACKAGE)),
}


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    if page.file.src_uri not in GENERATED:
        return markdown
    marker, write = GENERATED[page.file.src_uri]
    if marker not in markdown:
        raise ValueError(f"docs/{page.file.src_uri} has lost its {marker} marker, where the generated part goes")
    return markdown.replace(marker, write())
