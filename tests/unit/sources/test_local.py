"""A folder of the user's own cutouts, indexed from their CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from byol_discovery.sources.local import index_local_folder

from tests.cutouts import galaxy, write_fits


def test_local_folder_is_indexed_with_safe_ids_and_absolute_paths(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    write_fits(folder / "g1.fits", galaxy(32))
    raw_ids = ["../evil", "ok", "NGC 1234", "NGC_1234", "銀河"]
    pd.DataFrame({"id": raw_ids, "file": ["g1.fits"] * 5, "label": list("xyzuv")}).to_csv(
        folder / "list.csv", index=False
    )
    out = index_local_folder(folder / "list.csv", tmp_path / "data")
    table = pd.read_csv(out)
    assert list(table["id"][:3]) == ["evil", "ok", "NGC_1234"]
    # Ids that would look the same as an earlier one, or have no safe characters, get a hash, not an error.
    assert table["id"].is_unique and table["id"][3].startswith("NGC_1234-") and table["id"][4].startswith("id_")
    assert list(table["catalogue_id"]) == raw_ids, "the user's own ids stay, to join results back on"
    assert all(Path(f).is_absolute() and Path(f).is_file() for f in table["file"])
    assert list(table["label"]) == list("xyzuv")
