"""Ranked tables carry each object's name and sky position, as CSV and as ECSV with units."""

from __future__ import annotations

import numpy as np
import pandas as pd
from astropy.table import Table
from byol_discovery.io.tables import with_catalogue, write_ranked_table
from byol_discovery.plotting import fit_title


def test_ranked_table_gets_name_position_and_columns_but_not_the_target(tmp_path):
    ranking = pd.DataFrame({"id": ["b", "a"], "score": [0.9, 0.1], "label": pd.array([5, None], dtype="Int64")})
    catalogue = pd.DataFrame({"id": ["a", "b"], "is_rare": [0, 1], "label": ["FRI", "FRII"], "dec": [-1.5, 2.5],
                              "ra": [10.0, 20.0], "catalogue_id": ["NGC 1", "J1234+5678"]})
    table = with_catalogue(ranking, catalogue, leave_out=["is_rare"])
    assert list(table.columns) == ["id", "score", "label", "catalogue_id", "ra", "dec", "catalogue_label"]
    assert table["catalogue_id"].tolist() == ["J1234+5678", "NGC 1"], "joined on id, not on row order"
    write_ranked_table(tmp_path / "r.csv", tmp_path / "r.ecsv", table)
    read = Table.read(tmp_path / "r.ecsv")
    assert str(read["ra"].unit) == "deg" and str(read["dec"].unit) == "deg"
    assert list(read["catalogue_id"]) == ["J1234+5678", "NGC 1"]
    assert read["label"][0] == 5 and np.ma.is_masked(read["label"][1]), "no label stays empty, not 0"
    assert pd.read_csv(tmp_path / "r.csv")["ra"].tolist() == [20.0, 10.0]


def test_a_column_already_in_the_table_with_the_same_values_is_not_repeated():
    table = pd.DataFrame({"id": ["a"], "morphology": ["ring"]})
    joined = with_catalogue(table, pd.DataFrame({"id": ["a"], "morphology": ["ring"]}))
    assert list(joined.columns) == ["id", "morphology"]


def test_long_gallery_titles_wrap_and_shorten_to_the_tile():
    name = "J123456.78+123456.7_FIRST_long_name_here_and_more_stuff_to_cut"
    lines = fit_title(f"#1 0.93\n{name}").split("\n")
    assert lines[0] == "#1 0.93" and len(lines) == 3
    assert all(len(line) <= 16 for line in lines)
    assert lines[1].startswith("J123456.78") and lines[2].endswith("to_cut"), "both ends of the name stay"
    assert fit_title("#1\nsim00001") == "#1\nsim00001"


def test_the_ecsv_is_astropys_own_text_for_every_kind_of_column(tmp_path):
    """The rows are written by pandas (astropy's writer formats masked values one at a time:
    minutes at survey scale); the file is what astropy writes, byte for byte, missing values,
    empty and quoted text included; an object column, or text holding the writer's stand-in
    for a missing value, still goes through astropy."""
    rng = np.random.default_rng(0)
    n = 120
    frame = pd.DataFrame({
        "id": [f"obj {i}" if i % 7 == 0 else f"o{i}" for i in range(n)],
        "catalogue_id": ["J1 2" if i % 5 == 0 else ('q"x' if i % 11 == 0 else "") for i in range(n)],
        "ra": rng.random(n) * 360, "dec": rng.random(n) - 0.5,
        "map_x": rng.random(n).astype(np.float32),
        "gp_mean": np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 1e-7),
        "cluster": rng.integers(-1, 10, n), "label": pd.array([None if i % 3 else i % 6 for i in range(n)], "Int64"),
        "flag": rng.random(n) < 0.5, "far": np.where(rng.random(n) < 0.1, np.inf, rng.random(n) * 1e20),
        "name": ["é ü" if i % 3 else "x" for i in range(n)],
    })
    with_objects = frame.assign(note=pd.Series([None if i % 4 == 0 else "a b" for i in range(n)], dtype=object))
    holding_the_stand_in = frame.assign(name=["\u2400" if i == 3 else "x" for i in range(n)])
    for name, table in (("plain", frame), ("objects", with_objects), ("stand_in", holding_the_stand_in)):
        write_ranked_table(tmp_path / f"{name}.csv", tmp_path / f"{name}.ecsv", table)
        expected = Table.from_pandas(table)
        expected["ra"].unit = expected["dec"].unit = "deg"
        expected.write(tmp_path / f"{name}_astropy.ecsv", format="ascii.ecsv")
        assert (tmp_path / f"{name}.ecsv").read_text() == (tmp_path / f"{name}_astropy.ecsv").read_text()
