"""`byol-discovery similar`: the objects most like given ones, from a run's neighbours table.

Run from the folder the pipeline ran in (or a copy of its ``results/``)::

    byol-discovery similar J104325.8+411500 [ID ...] [--dataset first] [-k 8] [--csv]

The neighbours are the ``neighbours`` stage's (``results/<dataset>/neighbours/neighbours.h5``),
the ones LOF and the labelling page's "more like this" use; each comes with its name and
position on the sky and its anomaly score where the run's ranked table has them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

TABLE = Path("neighbours") / "neighbours.h5"
RANKING = Path("anomaly") / "ranking.csv"
RANKING_COLUMNS = ("catalogue_id", "ra", "dec", "rank")
DEFAULT_K = 8


def parser() -> argparse.ArgumentParser:
    parse = argparse.ArgumentParser(prog="byol-discovery similar",
                                    description="List the objects most like the given ones (nearest in the features).")
    parse.add_argument("ids", nargs="+", metavar="ID", help="object ids, as in the run's tables")
    parse.add_argument("--dataset", help="dataset (default: the only one under --results with a neighbours table)")
    parse.add_argument("-k", type=int,
                       help=f"how many per object (default {DEFAULT_K}, or all the table holds if fewer)")
    parse.add_argument("--results", default="results", help="the run's results folder (default: results)")
    parse.add_argument("--csv", action="store_true", help="write CSV instead of an aligned table")
    return parse


def dataset_folder(results: Path, dataset: str | None) -> Path:
    """``results/<dataset>``, or the only dataset folder holding a neighbours table; an
    error saying what to do when there is none or the choice is not clear."""
    if dataset is not None:
        folder = results / dataset
        if not (folder / TABLE).is_file():
            raise ValueError(f"{folder / TABLE} does not exist: run the pipeline for dataset {dataset!r} first "
                             "(bash run.sh demo, or byol-discovery run)")
        return folder
    found = sorted(path.parent.parent for path in results.glob(f"*/{TABLE.as_posix()}"))
    if not found:
        raise ValueError(f"no neighbours table under {results} (looked for {results}/<dataset>/{TABLE}); "
                         "run the pipeline first, or give --results")
    if len(found) > 1:
        raise ValueError(f"{len(found)} datasets under {results} have one ({', '.join(p.name for p in found)}); "
                         "choose with --dataset")
    return found[0]


def similar_objects(folder: Path, ids: Sequence[str], k: int | None = None) -> pd.DataFrame:
    """For each of ``ids``: its ``k`` nearest objects (query, rank, id, distance), with the
    name, position and anomaly rank the run's ranking gives each, where it has them."""
    from byol_discovery.neighbour_search import load_neighbours

    neighbours = load_neighbours(folder / TABLE)
    table = neighbours.nearest(list(ids), min(DEFAULT_K, neighbours.k) if k is None else k)
    if (folder / RANKING).is_file():
        ranking = pd.read_csv(folder / RANKING, dtype={"id": str, "catalogue_id": str})
        columns = [column for column in RANKING_COLUMNS if column in ranking.columns]
        anomaly = ranking[["id", *columns]].rename(columns={"rank": "anomaly_rank"})
        table = table.merge(anomaly, on="id", how="left", validate="many_to_one")
    return table


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    try:
        table = similar_objects(dataset_folder(Path(args.results), args.dataset), args.ids, args.k)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table.to_csv(index=False) if args.csv else table.to_string(index=False), end="" if args.csv else "\n")
    return 0
