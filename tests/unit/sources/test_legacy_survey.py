"""A Legacy Surveys source: the selection of a catalogue of positions and the cutout plan."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from byol_discovery.io.catalogue import safe_id
from byol_discovery.sources.legacy_survey import CutoutSpec


def test_a_plain_position_list_with_an_id_column_is_selected_with_safe_ids(tmp_path: Path) -> None:
    """The catalogue format the README gives for legacy_survey: id, ra, dec and any labels."""
    from byol_discovery.sources.legacy_survey import parse_survey_source, selected_rows

    catalogue = tmp_path / "positions.csv"
    pd.DataFrame({"id": ["NGC 4038", "../evil", "M51"], "ra": [180.47, 10.0, 202.47],
                  "dec": [-18.87, 1.0, 47.2], "kind": ["merger", "x", "spiral"]}).to_csv(catalogue, index=False)
    source = parse_survey_source({"type": "legacy_survey", "catalogue": str(catalogue)})
    rows = selected_rows(source, catalogue, seed=0)
    assert list(rows.columns[:3]) == ["id", "ra", "dec"] and list(rows["id"]).count(safe_id("NGC 4038")) == 1
    assert all("/" not in value and ".." not in value for value in rows["id"])


def test_large_integer_ids_keep_every_digit_and_blank_ids_are_dropped(tmp_path: Path) -> None:
    """Survey ids are often 17-digit integers: read as numbers, one blank id would turn them
    into floats that collide (3.9627e+16) and lose objects as "repeats"."""
    from byol_discovery.sources.legacy_survey import parse_survey_source, selected_rows

    catalogue = tmp_path / "positions.csv"
    catalogue.write_text("id,ra,dec\n39627000000000001,1,1\n39627000000000002,2,2\n,3,3\n007,4,4\n")
    source = parse_survey_source({"type": "legacy_survey", "catalogue": str(catalogue)})
    rows = selected_rows(source, catalogue, seed=0)
    assert rows["id"].tolist() == ["39627000000000001", "39627000000000002", "007"]


def test_every_object_keeps_a_name_of_its_own(tmp_path: Path) -> None:
    """Ids that sanitise alike, that have no safe characters, or that read like "missing"
    are still objects: none is lost or ends the selection of a whole survey."""
    from byol_discovery.sources.legacy_survey import parse_survey_source, selected_rows

    catalogue = tmp_path / "positions.csv"
    catalogue.write_text("id,ra,dec\nNGC 1,1,1\nNGC_1,2,2\n\u94f6\u6cb3,3,3\nNA,4,4\nnull,5,5\nNGC 1,6,6\n",
                         encoding="utf-8")
    source = parse_survey_source({"type": "legacy_survey", "catalogue": str(catalogue)})
    ids = selected_rows(source, catalogue, seed=0)["id"].tolist()
    assert ids[0] == "NGC_1" and ids[1].startswith("NGC_1-") and ids[2].startswith("id_")
    assert ids[3:] == ["NA", "null"], "the repeat of 'NGC 1' is dropped as a duplicate"
    assert len(set(ids)) == 5


def test_positions_wrap_in_ra_and_impossible_ones_are_left_out() -> None:
    from byol_discovery.sources.legacy_survey import plan_cutouts

    rows = pd.DataFrame({"id": ["west", "past_360", "beyond_pole", "no_dec", "plain"],
                         "ra": [-10.0, 370.0, 10.0, 10.0, 180.0], "dec": [1.0, 2.0, 95.0, np.nan, -30.0]})
    planned = plan_cutouts(rows, CutoutSpec(base_url="http://127.0.0.1:9/viewer", size=32))
    assert planned["id"].tolist() == ["west", "past_360", "plain"]
    assert [url.split("ra=")[1].split("&")[0] for url in planned["url"]] == ["350.000000", "10.000000", "180.000000"]
