"""Which of the package's source files a stage runs, and their digest: what reruns a stage
(and refuses an old resume state) after an edit to the code it runs, and nothing else."""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path


def source_files(*roots: str | Path) -> list[Path]:
    """The package's modules that the files ``roots`` import, directly or through each other,
    with every import statement counted (also those inside functions), and the roots
    themselves. Package ``__init__`` files only re-export and are not followed, so a script
    that imports ``byol_discovery.stages`` depends on the stage module it names as a root,
    not on every stage. Their digest (:func:`code_digest`), a rule's param, makes an edit
    rerun exactly the stages that run the edited code (Snakemake tracks a rule's script, not
    what it imports)."""
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


def code_digest(*roots: str | Path) -> str:
    """A digest of :func:`source_files` of ``roots``: their contents and names (a module's
    within the package, another file's within its folder), not where the checkout lies, so
    moving or cloning the project again changes nothing, while an edit to any module a
    stage runs changes its digest."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in source_files(*roots):
        name = path.relative_to(package).as_posix() if package in path.parents else f"{path.parent.name}/{path.name}"
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _imported_modules(path: Path) -> set[str]:
    """Dotted names of the byol_discovery modules (or packages) that ``path`` imports, also
    those it names in a string to import when needed (a registry's ``importlib`` imports)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # followed only where it is a module's dotted name
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # ``from a import b``: b is a module of package a, or a name defined in module a.
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in names if name.startswith("byol_discovery.")}
