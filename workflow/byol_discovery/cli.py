"""The `byol-discovery` console command: the project's main jobs as subcommands.

A subcommand is a function taking the arguments after its name and returning an exit
status, registered by the `@subcommand` line above it; its docstring's first line is its
help. `run` and `report` are Snakemake on the project's Snakefile, from the current
directory (where `config/` and `results/` are), every further argument passed through;
`label` serves the labelling page of that directory's results, and `similar` lists the
objects most like given ones from its neighbours table.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

Subcommand = Callable[[list[str]], int]

SUBCOMMANDS: dict[str, Subcommand] = {}

# The package lives in <repo>/workflow/byol_discovery (installed with `pip install -e .`).
SNAKEFILE = Path(__file__).resolve().parents[2] / "Snakefile"


def subcommand(function: Subcommand) -> Subcommand:
    """Register `function` as the subcommand of the same name (underscores read as dashes)."""
    SUBCOMMANDS[function.__name__.replace("_", "-")] = function
    return function


def snakemake(args: Sequence[str]) -> int:
    """Snakemake, in this interpreter, on the project's Snakefile, with `args`."""
    if not SNAKEFILE.is_file():
        print(
            f"error: the workflow's Snakefile is not at {SNAKEFILE}; byol-discovery runs from a clone of the "
            "project installed with `pip install -e .` (bash run.sh demo sets one up)",
            file=sys.stderr,
        )
        return 2
    return subprocess.call([sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), *args])


@subcommand
def run(args: list[str]) -> int:
    """Run the pipeline: `snakemake --cores all ARGS` (a later --cores, or -n for the plan, still applies)."""
    return snakemake(["--cores", "all", *args])


@subcommand
def report(args: list[str]) -> int:
    """Write the Snakemake report of the last run: `snakemake --report results/report.html ARGS`."""
    path = "results/report.html"
    if args and not args[0].startswith("-"):
        path, args = args[0], args[1:]
    return snakemake(["--report", path, *args])


@subcommand
def label(args: list[str]) -> int:
    """Serve the labelling page of a run's results on 127.0.0.1 (--dataset NAME, the run's config arguments)."""
    from byol_discovery.labelling.command import main as serve  # starlette only when labelling

    return serve(args)


@subcommand
def similar(args: list[str]) -> int:
    """List the objects most like given ones (IDs, then --dataset NAME, -k N, --csv), from the run's neighbours."""
    from byol_discovery.similar_objects import main as list_similar

    return list_similar(args)


def usage() -> str:
    width = max(len(name) for name in SUBCOMMANDS)
    lines = [
        "usage: byol-discovery COMMAND [ARGS...]",
        "",
        "BYOL features, clusters, anomaly ranking and active learning on astronomical images.",
        "",
        "commands:",
    ]
    for name, function in SUBCOMMANDS.items():
        summary = (function.__doc__ or "").strip().splitlines()[0]
        lines.append(f"  {name.ljust(width)}  {summary}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `byol-discovery`: dispatch to the subcommand named first."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, args = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"error: unknown command {name!r}; the commands are {', '.join(SUBCOMMANDS)}\n", file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 2
    return SUBCOMMANDS[name](args)


if __name__ == "__main__":
    sys.exit(main())
