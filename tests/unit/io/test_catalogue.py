from pathlib import Path

import pandas as pd
import pytest
from byol_discovery.io.catalogue import read_catalogue, safe_id


@pytest.mark.parametrize("raw", ["../../x", "a/b", "a\x00b", "..", "/etc/passwd", "J1234+56.7"])
def test_safe_id_cannot_escape_the_data_folder(tmp_path: Path, raw: str) -> None:
    try:
        name = safe_id(raw)
    except ValueError:
        return  # nothing usable left is also safe
    assert "/" not in name and "\x00" not in name and not name.startswith(".")
    assert (tmp_path / f"{name}.fits").resolve().parent == tmp_path.resolve()


def test_safe_id_keeps_ordinary_survey_names() -> None:
    assert safe_id("J112330.91+280016.8") == "J112330.91+280016.8"


def test_read_catalogue_requires_id_and_file(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    pd.DataFrame({"id": ["a"], "path": ["a.fits"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match=r"cat.csv: catalogue lacks column\(s\) \['file'\]"):
        read_catalogue(path)


def test_read_catalogue_names_the_lines_with_an_empty_id_or_file(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    path.write_text("id,file\na,a.fits\nb,\n,c.fits\nd, \n")
    with pytest.raises(ValueError, match=r"cat.csv: empty 'id' on line\(s\) 4 \(1 in all\)"):
        read_catalogue(path)
    path.write_text("id,file\na,a.fits\nb,\nd, \n")
    with pytest.raises(ValueError, match=r"cat.csv: empty 'file' on line\(s\) 3, 4 \(2 in all\)"):
        read_catalogue(path)


def test_read_catalogue_keeps_ids_that_read_like_missing_values(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    path.write_text("id,file,label\nNA,NA.fits,NA\nnull,null.fits,x\n")
    table = read_catalogue(path)
    assert table["id"].tolist() == ["NA", "null"] and table["file"].tolist() == ["NA.fits", "null.fits"]
    assert table["label"].isna().tolist() == [True, False], "in other columns NA is still missing"


def test_read_catalogue_rejects_duplicate_ids(tmp_path: Path) -> None:
    path = tmp_path / "cat.csv"
    pd.DataFrame({"id": ["a", "a"], "file": ["a.fits", "b.fits"]}).to_csv(path, index=False)
    with pytest.raises(ValueError, match="duplicate ids"):
        read_catalogue(path)
