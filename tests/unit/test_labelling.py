"""The labelling page's API, through Starlette's test client, on a synthetic results folder."""

from __future__ import annotations

import copy
import io
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")  # the test client's transport

from byol_discovery.active_learning_strategies import read_labels  # noqa: E402
from byol_discovery.labelling import command  # noqa: E402
from byol_discovery.labelling.app import create_app  # noqa: E402
from byol_discovery.labelling.labels import LabelConflict, LabelFile  # noqa: E402
from byol_discovery.labelling.retrain import Retrainer  # noqa: E402
from PIL import Image  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from tests.labelling_results import CONFIG, DATASET, write_results  # noqa: E402


@pytest.fixture
def results(tmp_path: Path) -> tuple[Path, list[str]]:
    return tmp_path, write_results(tmp_path)


def _state(root: Path, retrain: list[str] | None = None):
    state = command.build_state(CONFIG, root, DATASET, None, [])
    if retrain is not None:
        state.retrainer = Retrainer(retrain)
    return state


@pytest.fixture
def client(results) -> TestClient:
    root, _ = results
    with TestClient(create_app(_state(root))) as test_client:
        yield test_client


def _labels_file(root: Path) -> Path:
    return root / "data" / DATASET / "labels.csv"


def test_the_page_and_its_files_are_served_from_the_package(client):
    page = client.get("/")
    assert page.status_code == 200 and 'src="static/app.js"' in page.text
    assert "cdn" not in page.text.lower() and "http" not in page.text.split("<body>")[1], "nothing from the internet"
    for name in ("app.js", "style.css"):
        assert client.get(f"/static/{name}").status_code == 200
    info = client.get("/api/info").json()
    assert info["dataset"] == DATASET and info["progress"] == {"labelled": 0, "targets": 0, "total": 60}
    assert {"rank", "isolation_forest", "lof", "neighbour_score"} <= set(info["score_columns"])
    assert info["clusters"]["gmm"] == [0, 1, 2] and -1 in info["clusters"]["hdbscan"]


@pytest.mark.parametrize(("method", "column"), [(None, "classifier_priority"), ("gp_ei", "expected_improvement"),
                                                 ("neighbour_score", "neighbour_score")])
def test_the_list_shows_the_score_the_rank_follows(results, method, column):
    """Sorted by rank, each object's line shows the score of the config's learner, whichever it is."""
    root, _ = results
    config = copy.deepcopy(CONFIG)
    if method:
        config["datasets"][DATASET]["active_learning"] = {"method": method}
    with TestClient(create_app(command.build_state(config, root, DATASET, None, []))) as test_client:
        assert test_client.get("/api/info").json()["ranked_by"] == column
        assert all(column in item for item in test_client.get("/api/objects", params={"limit": 5}).json()["items"])


def test_objects_page_in_rank_order_sorted_filtered_and_searched(client, results):
    _, ranked = results
    first = client.get("/api/objects", params={"limit": 10}).json()
    assert first["total"] == 60 and [item["id"] for item in first["items"]] == ranked[:10]
    second = client.get("/api/objects", params={"limit": 10, "offset": 10}).json()
    assert [item["id"] for item in second["items"]] == ranked[10:20]
    anomalies = pd.read_csv(results[0] / "results" / DATASET / "anomaly" / "ranking.csv")
    lof = anomalies.sort_values("lof", ascending=False)
    by_lof = client.get("/api/objects", params={"sort": "lof", "order": "desc", "limit": 5}).json()
    assert [item["id"] for item in by_lof["items"]] == lof["id"].tolist()[:5]
    gmm1 = client.get("/api/objects", params={"method": "gmm", "cluster": 1, "limit": 500}).json()
    assert gmm1["total"] == 20 and all(item["gmm"] == 1 for item in gmm1["items"])
    found = client.get("/api/objects", params={"search": "j000012+0084"}).json()
    assert [item["id"] for item in found["items"]] == ["obj00012"], "catalogue_id, any case"
    part = client.get("/api/objects", params={"search": "obj0001"}).json()
    assert part["total"] == 10 and {item["id"] for item in part["items"]} == {f"obj0001{i}" for i in range(10)}
    exact = client.get("/api/objects", params={"search": "obj00001"}).json()
    assert exact["items"][0]["id"] == "obj00001", "an exact match comes first"


def test_unlabelled_first_puts_the_labelled_after_the_rest(client, results):
    _, ranked = results
    for object_id in ranked[:3]:
        assert client.post("/api/labels", json={"id": object_id, "label": 0}).status_code == 200
    items = client.get("/api/objects", params={"unlabelled_first": "1", "limit": 500}).json()["items"]
    assert [item["id"] for item in items[-3:]] == ranked[:3] and items[0]["id"] == ranked[3]
    assert [item["label"] for item in items[-3:]] == [0, 0, 0]


@pytest.mark.parametrize("params, message", [
    ({"sort": "nope"}, "cannot sort by 'nope'"),
    ({"sort": "morphology"}, "cannot sort by 'morphology'"),
    ({"limit": "0"}, "limit must be from 1 to 500"),
    ({"offset": "x"}, "offset must be an integer"),
    ({"method": "kmeans", "cluster": "1"}, "no cluster method 'kmeans'"),
])
def test_a_bad_list_request_is_a_400_naming_the_problem(client, params, message):
    answer = client.get("/api/objects", params=params)
    assert answer.status_code == 400 and message in answer.json()["error"]


def test_object_detail_carries_names_position_scores_links_but_not_the_target(client):
    detail = client.get("/api/objects/obj00012").json()
    fields = detail["fields"]
    assert fields["catalogue_id"] == "J000012+0084" and 150 <= fields["ra"] <= 200
    assert {"isolation_forest", "lof", "neighbour_score", "hdbscan", "gmm", "morphology", "map_x"} <= set(fields)
    assert "is_rare" not in fields, "the anomaly target would give the answer away"
    assert fields["catalogue_label"] in ("S", "E") and "label" not in fields, "a class is not the person's label"
    assert detail["label"] is None and detail["fits"] is False
    viewer = detail["links"]["Legacy Surveys"]
    assert f"ra={fields['ra']:.6f}" in viewer and "ls-dr10" in viewer
    assert set(detail["links"]) == {"Legacy Surveys", "SIMBAD", "NED"}
    missing = client.get("/api/objects/nope")
    assert missing.status_code == 404 and "no object 'nope'" in missing.json()["error"]


def test_images_from_the_store_and_the_original_fits_by_id_only(client):
    store = client.get("/api/objects/obj00005/image")
    assert store.status_code == 200 and store.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(store.content)).size == (8, 8)
    original = client.get("/api/objects/obj00000/image", params={"source": "fits"})
    assert original.status_code == 200 and Image.open(io.BytesIO(original.content)).size == (24, 24)
    assert Image.open(io.BytesIO(original.content)).mode == "RGB"
    no_file = client.get("/api/objects/obj00005/image", params={"source": "fits"})
    assert no_file.status_code == 404 and "no original FITS file" in no_file.json()["error"]
    assert client.get("/api/objects/obj00005/image", params={"source": "jpeg"}).status_code == 400
    for sneaky in ("..%2F..%2Fconfig%2Fconfig.yaml", "%2Fetc%2Fpasswd", "cutouts%2Fobj00000.fits"):
        assert client.get(f"/api/objects/{sneaky}/image", params={"source": "fits"}).status_code == 404


def test_more_like_this_is_the_nearest_in_feature_space(client):
    similar = client.get("/api/objects/obj00000/similar", params={"k": 5}).json()["similar"]
    assert similar[0] == "obj00001", "the object with the same features is nearest"
    assert len(similar) == 5 and "obj00000" not in similar
    assert all(int(i[3:]) % 3 == 0 for i in similar[1:3]), "then the members of its clump"
    assert client.get("/api/objects/nope/similar").status_code == 404
    assert client.get("/api/objects/obj00000/similar", params={"k": "many"}).status_code == 400


def test_more_like_this_reads_the_pipelines_neighbour_table_when_there_is_one(results):
    """The page shows the neighbours LOF used (neighbours/neighbours.h5), not a search of its own."""
    from byol_discovery.io.store import load_features
    from byol_discovery.neighbour_search import NeighbourTable, save_neighbours

    root, _ = results
    ids = load_features(root / "results" / DATASET / "features" / "features_pca.h5")[0]
    n = len(ids)
    backwards = np.array([[(row - step) % n for step in range(1, 4)] for row in range(n)])  # not the nearest
    table = NeighbourTable(np.asarray(ids, dtype=object), backwards, np.ones(backwards.shape), "exact")
    save_neighbours(root / "results" / DATASET / "neighbours" / "neighbours.h5", table, {})
    with TestClient(create_app(_state(root))) as test_client:
        similar = test_client.get(f"/api/objects/{ids[5]}/similar", params={"k": 3}).json()["similar"]
    assert similar == [str(ids[4]), str(ids[3]), str(ids[2])]


def test_the_map_and_a_click_on_it(client, results):
    points = client.get("/api/map").json()
    assert len(points["ids"]) == 60 and len(points["x"]) == 60 and points["method"] == "hdbscan"
    i = points["ids"].index("obj00007")
    nearest = client.get("/api/map/nearest", params={"x": points["x"][i], "y": points["y"][i]}).json()
    assert nearest["id"] == "obj00007"
    assert client.get("/api/map/nearest", params={"x": "a", "y": 1}).status_code == 400
    assert client.get("/api/map/nearest", params={"x": "nan", "y": 1}).status_code == 400


def test_a_label_goes_to_labels_csv_in_the_rules_format(client, results):
    root, _ = results
    answer = client.post("/api/labels", json={"id": "obj00003", "label": 5})
    assert answer.status_code == 200 and answer.json()["progress"] == {"labelled": 1, "targets": 1, "total": 60}
    client.post("/api/labels", json={"id": "obj00004", "label": 0})
    client.post("/api/labels", json={"id": "obj00003", "label": 2})  # changed: the row, not a second one
    table = read_labels(_labels_file(root), known_ids=[f"obj{i:05d}" for i in range(60)])
    assert table[["id", "label"]].values.tolist() == [["obj00003", 2], ["obj00004", 0]]
    assert client.get("/api/objects/obj00003").json()["label"] == 2


@pytest.mark.parametrize("body, status, message", [
    ({"id": "obj00003", "label": 6}, 400, "label must be an integer from 0 to 5, got 6"),
    ({"id": "obj00003", "label": -1}, 400, "from 0 to 5"),
    ({"id": "obj00003", "label": "5"}, 400, "got '5'"),
    ({"id": "obj00003", "label": 2.5}, 400, "got 2.5"),
    ({"id": "obj00003", "label": True}, 400, "got True"),
    ({"id": "obj00003"}, 400, "got None"),
    ({"id": "nope", "label": 1}, 404, "no object 'nope'"),
    ({"label": 1}, 400, "send JSON"),
    (["obj00003", 1], 400, "send JSON"),
])
def test_a_bad_label_is_a_4xx_and_nothing_is_written(client, results, body, status, message):
    root, _ = results
    client.post("/api/labels", json={"id": "obj00009", "label": 1})
    before = _labels_file(root).read_bytes()
    answer = client.post("/api/labels", json=body)
    assert answer.status_code == status and message in answer.json()["error"]
    assert _labels_file(root).read_bytes() == before


def test_malformed_json_is_a_400(client, results):
    answer = client.post("/api/labels", content=b"{id: obj00003, label: 1",
                         headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "send JSON" in answer.json()["error"]
    assert not _labels_file(results[0]).exists()


def test_a_hand_edit_while_running_is_read_in_not_overwritten(client, results):
    root, _ = results
    client.post("/api/labels", json={"id": "obj00003", "label": 5})
    time.sleep(0.01)
    _labels_file(root).write_text("id,label,note\nobj00003,4,looked again\nobj00020,1,\n")
    answer = client.post("/api/labels", json={"id": "obj00021", "label": 3}).json()
    assert answer["reloaded"] and "changed outside this page" in answer["message"]
    assert _labels_file(root).read_text() == "id,label,note\nobj00003,4,looked again\nobj00020,1,\nobj00021,3,\n"
    assert client.get("/api/info").json()["progress"]["labelled"] == 3


def test_a_hand_edit_that_breaks_the_file_is_a_409_and_nothing_is_written(client, results):
    root, _ = results
    client.post("/api/labels", json={"id": "obj00003", "label": 5})
    _labels_file(root).write_text("id,label\nobj00003,9\n")
    answer = client.post("/api/labels", json={"id": "obj00004", "label": 1})
    assert answer.status_code == 409
    assert "label '9' for 'obj00003' is not an integer from 0 to 5" in answer.json()["error"]
    assert "nothing was written" in answer.json()["error"]
    assert _labels_file(root).read_text() == "id,label\nobj00003,9\n"


def test_a_failed_write_leaves_the_old_file_whole(results, monkeypatch):
    root, _ = results
    labels = LabelFile(_labels_file(root), {f"obj{i:05d}" for i in range(60)})
    labels.set("obj00001", 1)
    before = _labels_file(root).read_bytes()

    def power_cut(descriptor):
        raise OSError("disk gone")

    monkeypatch.setattr("os.fsync", power_cut)
    with pytest.raises(OSError, match="disk gone"):
        labels.set("obj00002", 2)
    assert _labels_file(root).read_bytes() == before
    assert [p.name for p in _labels_file(root).parent.iterdir() if p.name.startswith(".")] == [], "no partial file left"


def test_concurrent_labels_are_all_kept(client, results):
    root, ranked = results
    errors = []

    def worker(ids):
        for object_id in ids:
            answer = client.post("/api/labels", json={"id": object_id, "label": int(object_id[-1]) % 6})
            if answer.status_code != 200:
                errors.append(answer.text)

    threads = [threading.Thread(target=worker, args=(ranked[k::6],)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    table = read_labels(_labels_file(root))
    assert sorted(table["id"]) == sorted(ranked) and len(table) == 60


def test_two_label_files_on_one_csv_lose_nothing(results):
    """Two servers (or tabs of two servers) on one labels.csv: each reads the other's labels in."""
    root, _ = results
    known = {f"obj{i:05d}" for i in range(60)}
    one, two = LabelFile(_labels_file(root), known), LabelFile(_labels_file(root), known)
    one.set("obj00001", 1)
    two.set("obj00002", 2)
    one.set("obj00003", 3)
    assert read_labels(_labels_file(root))[["id", "label"]].values.tolist() == [
        ["obj00001", 1], ["obj00002", 2], ["obj00003", 3]]


def test_an_unreadable_labels_file_at_start_names_the_line(results):
    root, _ = results
    _labels_file(root).write_text("id,label\nobj00001,1\nobj99999,2\n")
    with pytest.raises(LabelConflict, match=r"line 3: id 'obj99999' is not an object of this dataset"):
        _state(root)


def test_a_token_guards_every_request(results):
    root, _ = results
    app = create_app(_state(root), token="s3cret")
    with TestClient(app) as client:
        for path in ("/", "/static/app.js", "/api/info", "/api/objects/obj00001/image"):
            refused = client.get(path)
            assert refused.status_code == 401 and "token" in refused.json()["error"]
        assert client.post("/api/labels", json={"id": "obj00001", "label": 1}).status_code == 401
        assert not _labels_file(root).exists()
        assert client.get("/api/info", params={"token": "wrong"}).status_code == 401
        assert client.get("/api/info", headers={"X-Token": "s3cret"}).status_code == 200
        opened = client.get("/", params={"token": "s3cret"})
        assert opened.status_code == 200 and "byol_token" in opened.headers["set-cookie"]
        # The page's own requests then carry the cookie.
        assert client.post("/api/labels", json={"id": "obj00001", "label": 1}).status_code == 200


def test_retrain_runs_one_at_a_time_and_reports_how_it_went(results):
    root, _ = results
    slow = [sys.executable, "-c", "import time; time.sleep(1.5)"]
    with TestClient(create_app(_state(root, retrain=slow))) as client:
        assert client.get("/api/retrain").json()["state"] == "idle"
        assert client.post("/api/retrain").status_code == 202
        second = client.post("/api/retrain")
        assert second.status_code == 409 and "already running" in second.json()["message"]
        assert client.get("/api/retrain").json()["state"] == "running"
        deadline = time.time() + 30
        while client.get("/api/retrain").json()["state"] == "running" and time.time() < deadline:
            time.sleep(0.1)
        assert client.get("/api/retrain").json() | {"seconds": 0} == {"state": "done", "runs": 1, "seconds": 0,
                                                                       "message": "the ranking is up to date"}
    failing = [sys.executable, "-c", "import sys; sys.exit('MissingInputException: no store')"]
    with TestClient(create_app(_state(root, retrain=failing))) as client:
        client.post("/api/retrain")
        deadline = time.time() + 30
        while client.get("/api/retrain").json()["state"] == "running" and time.time() < deadline:
            time.sleep(0.1)
        status = client.get("/api/retrain").json()
        assert status["state"] == "error" and "MissingInputException: no store" in status["message"]
    with TestClient(create_app(_state(root))) as client:
        assert client.post("/api/retrain").status_code == 503


def test_a_new_ranking_on_disk_is_served_at_once(client, results):
    root, ranked = results
    path = root / "results" / DATASET / "active_learning" / "ranking.csv"
    table = pd.read_csv(path)
    table["rank"] = np.arange(len(table), 0, -1)
    time.sleep(0.01)
    table.to_csv(path, index=False)
    assert client.get("/api/objects", params={"limit": 1}).json()["items"][0]["id"] == ranked[-1]


def test_the_command_prints_one_url_and_a_token_off_loopback(results, monkeypatch, capsys):
    import uvicorn

    root, _ = results
    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(sockets[0].getsockname()))
    assert command.main(["--directory", str(root), "--port", "0"]) == 0
    out = capsys.readouterr().out
    urls = [line for line in out.splitlines() if line.startswith("http")]
    assert urls == [f"http://127.0.0.1:{served[0][1]}/"], "one URL, no token on loopback"
    assert command.main(["--directory", str(root), "--port", "0", "--host", "0.0.0.0", "--dataset", DATASET]) == 0
    urls = [line for line in capsys.readouterr().out.splitlines() if line.startswith("http")]
    assert len(urls) == 1 and "?token=" in urls[0] and len(urls[0].split("token=")[1]) >= 24
    with pytest.raises(SystemExit, match="dataset 'nope' is not in the config"):
        command.main(["--directory", str(root), "--dataset", "nope"])
    with pytest.raises(SystemExit, match="write KEY=VALUE"):
        command.main(["--directory", str(root), "--config", "results_dir"])


def test_config_arguments_are_merged_as_snakemake_does(tmp_path):
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "config.yaml").write_text("results_dir: results\ndatasets: {a: {}}\ndata_dir: data\n")
    (tmp_path / "more.yaml").write_text("results_dir: elsewhere\n")
    config = command.load_config(tmp_path, ["more.yaml"], ["data_dir=mine", "labels_dir=null"])
    assert (config["results_dir"], config["data_dir"], config["labels_dir"]) == ("elsewhere", "mine", None)
    assert config["datasets"] == {"a": {}}
    assert command.is_loopback("127.0.0.1") and command.is_loopback("::1") and command.is_loopback("localhost")
    assert not command.is_loopback("0.0.0.0") and not command.is_loopback("login1.cluster")


def test_a_results_folder_copied_elsewhere_works_from_its_own_folder(results, tmp_path_factory, monkeypatch):
    import shutil

    root, ranked = results
    copy = tmp_path_factory.mktemp("copied") / "project"
    shutil.copytree(root, copy)
    shutil.rmtree(root)  # nothing may point back at the original
    monkeypatch.chdir(copy)
    with TestClient(create_app(command.build_state(CONFIG, Path("."), DATASET, None, []))) as client:
        assert client.get("/api/objects", params={"limit": 1}).json()["items"][0]["id"] == ranked[0]
        assert client.get("/api/objects/obj00000/image", params={"source": "fits"}).status_code == 200
        assert client.post("/api/labels", json={"id": "obj00002", "label": 4}).status_code == 200
    assert (copy / "data" / DATASET / "labels.csv").read_text() == "id,label\nobj00002,4\n"


def test_other_sites_cannot_label_or_retrain_through_the_browser(results):
    root, _ = results
    slow = [sys.executable, "-c", "pass"]
    app = create_app(_state(root, retrain=slow), hosts=["127.0.0.1", "localhost"])
    with TestClient(app, base_url="http://127.0.0.1:8765") as client:
        assert client.get("/api/info").status_code == 200
        same = client.post("/api/labels", json={"id": "obj00001", "label": 1},
                           headers={"Origin": "http://127.0.0.1:8765"})
        assert same.status_code == 200
        for path, kwargs in (("/api/labels", {"json": {"id": "obj00002", "label": 5}}), ("/api/retrain", {})):
            other = client.post(path, headers={"Origin": "https://evil.example"}, **kwargs)
            assert other.status_code == 403 and "evil.example" in other.json()["error"]
        # A form post (no preflight) is not JSON: refused before it is read.
        form = client.post("/api/labels", content='{"id": "obj00002", "label": 5}',
                           headers={"Content-Type": "text/plain"})
        assert form.status_code == 415
        assert client.get("/api/retrain").json()["runs"] == 0
    assert _labels_file(root).read_text() == "id,label\nobj00001,1\n"
    with TestClient(app, base_url="http://rebound.example:8765") as client:
        assert client.get("/api/info").status_code == 400, "a name pointed at 127.0.0.1 by someone else"


def test_radio_data_link_the_vlass_layer_and_a_missing_position_links_nothing():
    from byol_discovery.labelling.app import sky_links

    assert "layer=vlass1.2" in sky_links(150.0, 2.0, radio=True)["Legacy Surveys"]
    assert "Coord=150.000000%20%2B2.000000" in sky_links(150.0, 2.0, radio=False)["SIMBAD"]
    assert sky_links(None, None, radio=False) == {} and sky_links(float("nan"), 1.0, radio=False) == {}


def test_a_single_band_fits_is_stretched_grey_and_grz_becomes_rgb():
    from byol_discovery.labelling.images import stretched

    band = np.zeros((10, 10))
    band[5, 5] = 100.0
    grey = stretched(band)
    assert grey.shape == (1, 10, 10) and grey[0, 5, 5] == 255 and grey[0, 0, 0] == 0
    cube = np.zeros((3, 10, 10))
    cube[2, 5, 5] = 100.0  # light in z only
    rgb = stretched(cube, bands="grz")
    assert rgb[0, 5, 5] == 255 and rgb[1, 5, 5] == 0 and rgb[2, 5, 5] == 0, "z is shown red"
