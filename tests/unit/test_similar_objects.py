"""`byol-discovery similar`: the objects most like given ones, from a run's neighbours table."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from byol_discovery import cli, stages
from byol_discovery.similar_objects import TABLE

from tests.labelling_results import DATASET, write_results

SETTINGS = {"method": "exact", "exact_below": 100_000, "k": 5,
            "hnsw": {"m": 16, "ef_construction": 40, "ef_search": 32}}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    """A run's results folder with its neighbours table; ``obj00001`` repeats ``obj00000``."""
    write_results(tmp_path)
    folder = tmp_path / "results" / DATASET
    stages.neighbours(folder / "features" / "features_pca.h5", folder / TABLE, SETTINGS, lof_neighbors=5)
    return tmp_path / "results"


def similar(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(["similar", *args])
    out, err = capsys.readouterr()
    return status, out, err


def test_an_objects_nearest_come_first_with_their_names_positions_and_anomaly_rank(results, capsys) -> None:
    status, out, _ = similar(["--results", str(results), "obj00001", "obj00010", "-k", "3", "--csv"], capsys)
    assert status == 0
    table = pd.read_csv(io.StringIO(out), dtype={"id": str, "query": str})
    assert len(table) == 6 and table.groupby("query")["rank"].apply(list).to_dict() == {
        "obj00001": [1, 2, 3], "obj00010": [1, 2, 3]}
    first = table.iloc[0]
    assert (first["query"], first["id"], first["distance"]) == ("obj00001", "obj00000", 0.0)
    ranking = pd.read_csv(results / DATASET / "anomaly" / "ranking.csv", dtype={"id": str}).set_index("id")
    assert first["catalogue_id"] == ranking.loc["obj00000", "catalogue_id"]
    assert first["anomaly_rank"] == ranking.loc["obj00000", "rank"]
    assert {"ra", "dec"} <= set(table.columns)


def test_an_unknown_id_or_a_missing_table_says_what_to_do(results, capsys, tmp_path) -> None:
    status, out, _ = similar(["--results", str(results), "obj00001"], capsys)
    assert status == 0 and out.count("obj00001") == 5, "without -k, as many as the table holds (5) when under 8"
    status, _, err = similar(["--results", str(results), "no_such_object"], capsys)
    assert status == 2 and "'no_such_object'] are not objects of this dataset" in err
    status, _, err = similar(["--results", str(results), "obj00001", "-k", "50"], capsys)
    assert status == 2 and "raise neighbours.k and rerun the neighbours rule" in err
    status, _, err = similar(["--results", str(tmp_path / "elsewhere"), "obj00001"], capsys)
    assert status == 2 and "no neighbours table under" in err and "run the pipeline first" in err
    status, _, err = similar(["--results", str(results), "--dataset", "other", "obj00001"], capsys)
    assert status == 2 and "other" in err and "run the pipeline for dataset" in err


def test_two_datasets_need_a_choice(results, capsys) -> None:
    other = results / "second" / TABLE
    other.parent.mkdir(parents=True)
    other.write_bytes((results / DATASET / TABLE).read_bytes())
    status, _, err = similar(["--results", str(results), "obj00001"], capsys)
    assert status == 2 and "choose with --dataset" in err
    status, out, _ = similar(["--results", str(results), "--dataset", "second", "obj00001", "-k", "1"], capsys)
    assert status == 0 and "obj00000" in out
