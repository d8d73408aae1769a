"""Active learning: label files, NeighbourScore, GP expected improvement, the simulated person,
and the stage end to end on a tiny store."""

from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd
import pytest
from byol_discovery import active_learning_strategies as al
from byol_discovery.anomaly_scores import isolation_forest_scores
from byol_discovery.io.store import create_store, load_features, save_features
from scipy.stats import norm

# ----------------------------------------------------------------------------- label files

IDS = ["a", "b", "c", "d"]


def _write(tmp_path, text: str, name: str = "labels.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_labels_accepts_extra_columns_blank_lines_bom_and_spaces(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffnote,id,label\nnice, a ,5\n\n,c, 0\n".encode())
    table = al.read_labels(path, known_ids=IDS)
    assert table["id"].tolist() == ["a", "c"]
    assert table["label"].tolist() == [5, 0]
    assert table["line"].tolist() == [2, 4]


def test_read_labels_takes_spreadsheet_integers_and_skips_rows_not_judged_yet(tmp_path):
    table = al.read_labels(_write(tmp_path, "id,label\na,3.0\nb,\nc,0\n"), known_ids=IDS)
    assert table["id"].tolist() == ["a", "c"] and table["label"].tolist() == [3, 0]


def test_read_labels_header_only_is_empty(tmp_path):
    table = al.read_labels(_write(tmp_path, "id,label\n"), known_ids=IDS)
    assert table.empty and list(table.columns) == ["id", "label", "line"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,label\na,1\nzzz,3\n", r"line 3: id 'zzz' is not an object of this dataset$"),
        ("id,label\nA,1\n", r"line 2: id 'A' is not an object of this dataset \(did you mean 'a'\?"),
        ("id;label\na;1\n", r"line 1: .*separated by semicolons: save it with commas"),
        ("id\tlabel\na\t1\n", r"line 1: .*separated by tabs: save it with commas"),
        ("id,label\na,6\n", r"line 2: label '6' for 'a' is not an integer from 0 to 5"),
        ("id,label\na,-1\n", r"line 2: label '-1'"),
        ("id,label\na,2.5\n", r"line 2: label '2.5'"),
        ("id,label\na,3.5\n", r"line 2: label '3.5'"),
        ("id,label\na,yes\n", r"line 2: label 'yes'"),
        ("id,label\na,1\nb,2\n\na,3\n", r"line 5: id 'a' is labelled again \(first on line 2\)"),
        ("id,score\na,1\n", r"line 1: the header must name the columns 'id' and 'label'"),
        ("", r"line 1: the header"),
        ("id,label\n,3\n", r"line 2: empty id"),
        ("id,label\na\n", r"line 2: expected an id and a label"),
        ("id,label\na,0_5\n", r"line 2: label '0_5'"),
        ("id,label\na,\u0663\n", r"line 2: label '\u0663'"),
        ("id,label,id\na,1,b\n", r"line 1: the header names \['id'\] more than once"),
    ],
)
def test_bad_label_files_name_the_line(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(al.LabelFileError, match=message) as error:
        al.read_labels(path, known_ids=IDS)
    assert str(path) in str(error.value)


def test_a_labels_file_saved_in_a_windows_code_page_is_named(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_bytes("id,label,notes\na,1,tr\u00e8s brillant\n".encode("cp1252"))
    with pytest.raises(al.LabelFileError, match="not UTF-8 text.*save it as CSV UTF-8") as error:
        al.read_labels(path, known_ids=IDS)
    assert str(path) in str(error.value)


def test_label_vector_aligns_and_marks_unlabelled():
    labels = pd.DataFrame({"id": ["c", "a"], "label": [5, 0]})
    vector = al.label_vector(IDS, labels)
    assert vector[0] == 0 and vector[2] == 5
    assert np.isnan(vector[[1, 3]]).all()
    assert np.isnan(al.label_vector(IDS, al.no_labels())).all()


# ----------------------------------------------------------------------------- NeighbourScore


def test_neighbour_score_without_labels_returns_the_scores():
    rng = np.random.default_rng(0)
    s = rng.uniform(0, 5, 30)
    np.testing.assert_array_equal(al.neighbour_score(s, rng.normal(size=(30, 3)), np.full(30, np.nan)), s)


def test_neighbour_score_follows_the_formula_with_one_label():
    # One labelled object: the forest predicts its label everywhere, so u is known exactly.
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    s = np.array([4.0, 3.0, 2.0, 5.0])
    labels = np.array([np.nan, 2.0, np.nan, np.nan])
    final = al.neighbour_score(s, x, labels, alpha=1.0, n_estimators=10, seed=0)
    f = 0.1 + 0.85 * 2.0 / 5.0
    d = np.array([1.0, 0.0, 2.0, 9.0])
    expected = s * np.tanh(np.exp(d / d.mean()) - 1 + np.arctanh(f))
    np.testing.assert_allclose(final, expected)
    assert final[1] == pytest.approx(3.0 * f)  # at the labelled object: s * f
    assert final[3] == pytest.approx(5.0, rel=1e-6)  # far from every label: s


def test_neighbour_score_demotes_neighbours_of_dull_labels_and_is_seeded():
    rng = np.random.default_rng(1)
    x = np.vstack([rng.normal(0, 0.1, (20, 2)), rng.normal(5, 0.1, (20, 2))])
    s = np.full(40, 4.0)
    labels = np.full(40, np.nan)
    labels[0], labels[20] = 0, 5
    final = al.neighbour_score(s, x, labels, n_estimators=20, seed=3)
    assert final[1:20].mean() < final[21:40].mean()
    assert np.all(final <= s + 1e-12)
    np.testing.assert_array_equal(final, al.neighbour_score(s, x, labels, n_estimators=20, seed=3))
    with pytest.raises(ValueError, match="labels"):
        al.neighbour_score(s, x, labels[:-1])
    bad = labels.copy()
    bad[5] = 7
    with pytest.raises(ValueError, match=r"\[0, 5\]"):
        al.neighbour_score(s, x, bad)


# ----------------------------------------------------------------------------- GP and EI


def test_expected_improvement_matches_the_closed_form():
    mu, sigma = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.5, 1.0, 0.0, 0.0])
    ei = al.expected_improvement(mu, sigma, best=2.5, xi=0.1)
    z = (mu[:2] - 2.6) / sigma[:2]
    np.testing.assert_allclose(ei[:2], (mu[:2] - 2.6) * norm.cdf(z) + sigma[:2] * norm.pdf(z))
    assert ei[2] == pytest.approx(0.4) and ei[3] == pytest.approx(1.4)  # sigma 0: certain gain
    assert np.all(ei >= 0)


def test_gp_ranks_objects_near_the_interesting_label_first():
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]])
    x = np.vstack([c + rng.normal(0, 0.4, (30, 2)) for c in centres])
    labels = np.full(90, np.nan)
    labels[[0, 1]] = 0
    labels[[30, 31]] = 5  # cluster 1 is interesting
    labels[[60, 61]] = 1
    result = al.gp_expected_improvement(x, labels, seed=0)
    assert result.mean[32:60].mean() > 3 and result.mean[2:30].mean() < 1.5
    unlabelled = np.flatnonzero(np.isnan(labels))
    top = unlabelled[np.argsort(-result.ei[unlabelled])[:10]]
    assert np.mean((top >= 30) & (top < 60)) >= 0.8
    again = al.gp_expected_improvement(x, labels, seed=0)
    np.testing.assert_array_equal(result.ei, again.ei)
    with pytest.raises(ValueError, match="at least one"):
        al.gp_expected_improvement(x, np.full(90, np.nan))


def test_initial_picks_spread_along_the_first_component():
    x = np.column_stack([np.arange(100.0), np.zeros(100)])
    picks = al.initial_picks(x, 4)
    assert sorted(x[picks, 0].tolist()) == [12.0, 37.0, 62.0, 87.0]
    assert al.initial_picks(x, 0).size == 0
    assert al.initial_picks(x[:3], 10).size == 3


# ----------------------------------------------------------------------------- simulated person


@pytest.fixture(scope="module")
def dull_outliers() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inliers, 40 dull far outliers (artefacts) that an isolation forest ranks first, and
    15 mildly unusual targets: the case active learning exists for."""
    rng = np.random.default_rng(0)
    inliers = rng.normal(0, 1, (600, 4))
    dull = rng.normal(0, 1.0, (40, 4)) + np.r_[10, 0, 0, 0]
    targets = rng.normal(0, 0.5, (15, 4)) + np.r_[0, 4.5, 0, 0]
    x = np.vstack([inliers, dull, targets])
    is_target = np.r_[np.zeros(640, bool), np.ones(15, bool)]
    return x, isolation_forest_scores(x, n_estimators=100, seed=0), is_target


def test_simulated_person_records_each_inspection(dull_outliers):
    x, s, target = dull_outliers
    curve = al.simulate_person("neighbour_score", s, x, target, rounds=3, batch=10,
                               settings={"n_estimators": 30}, seed=0)
    assert list(curve.columns) == ["strategy", "index", "round", "inspected", "is_target", "found"]
    assert curve["inspected"].tolist() == list(range(1, 31))
    assert curve["round"].tolist() == [1] * 10 + [2] * 10 + [3] * 10
    assert curve["index"].is_unique
    np.testing.assert_array_equal(curve["found"], np.cumsum(target[curve["index"]]))
    # round 1 has no labels: the unsupervised order
    np.testing.assert_array_equal(curve["index"][:10], np.argsort(-s, kind="stable")[:10])
    again = al.simulate_person("neighbour_score", s, x, target, 3, 10, {"n_estimators": 30}, 0)
    pd.testing.assert_frame_equal(curve, again)


def test_active_learning_beats_the_anomaly_score_when_outliers_are_dull(dull_outliers):
    x, s, target = dull_outliers
    curves = al.discovery_curves(s, x, target, rounds=3, batch=10, settings={"n_estimators": 30}, seed=0)
    found = curves.groupby("strategy")["found"].last()
    assert found["neighbour_score"] >= found["unsupervised"] + 4
    assert found["gp_ei"] > found["unsupervised"]
    assert found["unsupervised"] >= found["random"]
    summary = al.curve_summary(curves, int(target.sum()), len(target)).set_index("strategy")
    assert summary.loc["neighbour_score", "inspected"] == 30
    assert summary.loc["random", "expected_random"] == pytest.approx(30 * 15 / 655)
    assert summary.loc["neighbour_score", "recall"] == pytest.approx(found["neighbour_score"] / 15)


def test_gp_strategy_starts_from_picks_along_pc1_and_random_is_seeded(dull_outliers):
    x, s, target = dull_outliers
    gp = al.simulate_person("gp_ei", s, x, target, rounds=1, batch=5)
    assert set(gp["index"]) == set(al.initial_picks(x, 5))
    a = al.simulate_person("random", s, x, target, 2, 5, seed=1)
    assert a["index"].tolist() == al.simulate_person("random", s, x, target, 2, 5, seed=1)["index"].tolist()
    assert a["index"].tolist() != al.simulate_person("random", s, x, target, 2, 5, seed=2)["index"].tolist()
    with pytest.raises(ValueError, match="strategy"):
        al.simulate_person("psychic", s, x, target, 1, 5)


def test_simulation_stops_when_everything_is_inspected():
    x = np.arange(6.0)[:, None]
    curve = al.simulate_person("unsupervised", np.arange(6.0), x, np.ones(6, bool), rounds=5, batch=4)
    assert len(curve) == 6 and curve["found"].iloc[-1] == 6


# ----------------------------------------------------------------------------- the stage


@pytest.fixture
def tiny_dataset(tmp_path, dull_outliers):
    """Store, PCA features and an anomaly ranking for the dull-outlier data (8x8 images)."""
    x, s, target = dull_outliers
    ids = np.array([f"obj{i:03d}" for i in range(len(x))], dtype=object)
    rng = np.random.default_rng(0)
    with create_store(tmp_path / "store.h5", channels=1, size=8) as writer:
        for object_id in ids:
            writer.append(object_id, rng.integers(0, 255, (1, 8, 8), dtype=np.uint8))
        writer.finish(pd.DataFrame({"id": ids, "kind": np.where(target, "target", "other")}), {})
    save_features(tmp_path / "pca.h5", ids, x, {})
    order = np.argsort(-s, kind="stable")
    ranking = pd.DataFrame({"id": ids[order], "isolation_forest": s[order], "lof": s[order],
                            "rank": np.arange(1, len(s) + 1)})
    ranking.to_csv(tmp_path / "ranking.csv", index=False)
    return tmp_path, ids, target


SETTINGS = {
    "method": "neighbour_score", "score": "isolation_forest", "max_dims": None, "n_estimators": 30,
    "alpha": 1.0, "xi": 0.01, "top_n": 8, "seed": 0,
    "simulate": {"rounds": 3, "batch": 10, "target_label": 5, "other_label": 0},
}
OUTPUT_NAMES = {"ranking": "r.csv", "ranking_ecsv": "r.ecsv", "gallery": "g.png", "curve": "c.csv", "summary": "s.csv",
                "curve_plot": "c.png"}


def _run_stage(root, labels, out, settings=SETTINGS, ranking="ranking.csv"):
    from byol_discovery.stages import active_learning

    outputs = {key: root / out / name for key, name in OUTPUT_NAMES.items()}
    table = active_learning(root / ranking, root / "pca.h5", root / "store.h5", labels, outputs, settings,
                            target={"column": "kind", "values": ["target"]})
    return table, outputs


def test_stage_without_labels_with_labels_and_without_leaks(tiny_dataset):
    root, ids, target = tiny_dataset
    table, outputs = _run_stage(root, None, "none")
    assert list(table.columns) == ["id", "isolation_forest", "label", "neighbour_score", "gp_mean", "gp_sd",
                                   "expected_improvement", "interest_probability", "classifier_priority", "rank"], \
        "no catalogue truth in the list a person labels"
    assert table["rank"].tolist() == list(range(1, len(ids) + 1))
    assert table["label"].isna().all() and table["gp_mean"].isna().all()
    np.testing.assert_allclose(table["neighbour_score"], table["isolation_forest"])
    for path in outputs.values():
        assert path.is_file() and path.stat().st_size > 0
    curves = pd.read_csv(outputs["curve"])
    assert set(curves["strategy"]) == set(al.STRATEGIES)
    assert set(curves["id"]) <= set(ids)
    summary = pd.read_csv(outputs["summary"]).set_index("strategy")
    assert summary.loc["neighbour_score", "found"] >= summary.loc["random", "found"]

    # A person labels the five most anomalous (dull) objects 0: they and their like sink.
    top5 = table["id"][:5].tolist()
    labels_csv = root / "labels.csv"
    labels_csv.write_text("id,label\n" + "".join(f"{i},0\n" for i in top5))
    labelled, _ = _run_stage(root, labels_csv, "labelled")
    assert labelled.set_index("id").loc[top5, "label"].tolist() == [0] * 5
    assert labelled["gp_mean"].notna().all()
    assert not set(labelled["id"][:5]) & set(top5)

    # Earlier outputs in the ranking file must not leak in: same result without them.
    leaky = pd.read_csv(root / "ranking.csv").assign(neighbour_score=123.0, label=5, gp_mean=-1.0)
    leaky.to_csv(root / "leaky.csv", index=False)
    again, _ = _run_stage(root, labels_csv, "leaky", ranking="leaky.csv")
    pd.testing.assert_frame_equal(again, labelled)


def test_stage_gp_method_and_bad_labels(tiny_dataset):
    root, ids, _ = tiny_dataset
    settings = {**SETTINGS, "method": "gp_ei", "simulate": {**SETTINGS["simulate"], "rounds": 1}}
    table, _ = _run_stage(root, None, "gp", settings)
    _, x, _ = load_features(root / "pca.h5")
    assert set(table["id"][:8]) == set(ids[al.initial_picks(x, 8)])  # cold start: spread along PC1
    bad = root / "bad.csv"
    bad.write_text(f"id,label\n{ids[0]},3\nnot_an_object,1\n")
    with pytest.raises(al.LabelFileError, match="line 3: id 'not_an_object'"):
        _run_stage(root, bad, "bad", settings)
    assert math.isnan(table["expected_improvement"].iloc[0])


def test_labelled_objects_rank_after_the_rest_and_a_flat_gp_is_warned_of(tiny_dataset, caplog):
    """The top of active_learning/ranking.csv is what to look at next, whichever method ranks it; a GP
    that learnt nothing from the labels says so instead of ranking by noise."""
    root, ids, _ = tiny_dataset
    settings = {**SETTINGS, "method": "gp_ei", "simulate": {**SETTINGS["simulate"], "rounds": 1}}
    labels_csv = root / "labels.csv"
    labels_csv.write_text(f"id,label\n{ids[0]},5\n{ids[1]},5\n{ids[2]},0\n")
    with caplog.at_level(logging.WARNING):
        table, _ = _run_stage(root, labels_csv, "gp_labelled", settings)
    assert table["label"].isna().tolist() == [True] * (len(ids) - 3) + [False] * 3
    assert table["rank"].tolist() == list(range(1, len(ids) + 1))
    assert not any("finds no structure" in message for message in caplog.messages), "these labels inform it"

    flat = table.assign(gp_mean=np.where(table["label"].isna(), 0.5, table["gp_mean"]))
    from byol_discovery.stages.active_learning import _warn_if_the_gp_learnt_nothing

    with caplog.at_level(logging.WARNING):
        _warn_if_the_gp_learnt_nothing(flat, "gp_ei", logging.getLogger("test"))
    assert any("finds no structure in the 3 labels" in message for message in caplog.messages)


def test_the_anomaly_gallery_names_each_object_by_rank_score_and_id(tiny_dataset, monkeypatch):
    """A person who sees an object in anomaly/top.png can write its id in labels.csv."""
    from byol_discovery import plotting, stages

    root, ids, _ = tiny_dataset
    shown = {}
    monkeypatch.setattr(plotting, "image_gallery", lambda images, path, titles, **_: shown.update(titles=titles))
    outputs = {"ranking": root / "a.csv", "ranking_ecsv": root / "a.ecsv", "gallery": root / "a.png",
               "evaluation": root / "e.csv"}
    ranking = stages.anomaly(root / "store.h5", root / "pca.h5", outputs,
                                    {"n_estimators": 10, "lof_neighbors": 5, "top_n": 4, "seed": 0})
    assert shown["titles"] == [f"#{r} {s:.2f}\n{i}" for r, s, i in ranking[["rank", "isolation_forest", "id"]][:4]
                               .itertuples(index=False)]


@pytest.mark.parametrize("stage", ["anomaly", "active_learning"])
def test_features_of_other_objects_stop_the_stage_before_any_scoring(tiny_dataset, monkeypatch, stage):
    from byol_discovery import anomaly_scores, stages

    root, ids, _ = tiny_dataset
    x = load_features(root / "pca.h5")[1]
    save_features(root / "pca.h5", ids[::-1].copy(), x, {})  # the same objects, in another order

    def not_reached(*args, **kwargs):
        raise AssertionError("scored before the objects were checked")

    monkeypatch.setattr(anomaly_scores, "isolation_forest_scores", not_reached)
    monkeypatch.setattr(al, "neighbour_score", not_reached)
    with pytest.raises(ValueError, match="hold different objects; rerun the features stage"):
        if stage == "anomaly":
            stages.anomaly(root / "store.h5", root / "pca.h5", {}, {"n_estimators": 10, "seed": 0})
        else:
            _run_stage(root, None, "out")


def test_classifier_learns_the_interest_once_a_target_is_labelled(dull_outliers):
    x, s, target = dull_outliers
    curves = al.discovery_curves(s, x, target, rounds=3, batch=10, seed=0,
                                 strategies=("unsupervised", "classifier"))
    found = curves.groupby("strategy")["found"].last()
    assert found["classifier"] >= found["unsupervised"] + 5
    first_round = curves[(curves["strategy"] == "classifier") & (curves["round"] == 1)]["index"].to_numpy()
    # No interesting label yet: half the batch spread along PC1, half the unsupervised ranking's top.
    np.testing.assert_array_equal(first_round[:5], al.initial_picks(x, 5))
    np.testing.assert_array_equal(first_round[5:], [i for i in np.argsort(-s, kind="stable") if i not in
                                                     first_round[:5]][:5])


def test_classifier_priority_probability_and_exploration(dull_outliers):
    x, s, target = dull_outliers
    labels = np.full(len(s), np.nan)
    labels[[0, 1, 2, 640]] = [0, 0, 0, 5]  # one target labelled interesting
    result = al.classifier_priority(s, x, labels, explore=0.0, c=1.0)
    assert result.probability[target].mean() > 2 * result.probability[:600].mean()
    np.testing.assert_array_equal(result.priority, result.probability)
    explored = al.classifier_priority(s, x, labels, explore=1.0)
    assert explored.novelty[[0, 1, 2, 640]].tolist() == [0.0] * 4
    assert explored.novelty.max() == pytest.approx(1.0)
    np.testing.assert_allclose(explored.priority, explored.probability + explored.novelty)
    only_dull = np.full(len(s), np.nan)
    only_dull[:5] = 0
    np.testing.assert_allclose(al.classifier_priority(s, x, only_dull, explore=0.0).probability, s / 5)


def test_classifier_penalty_comes_from_the_settings(dull_outliers):
    x, s, _ = dull_outliers
    labels = np.full(len(s), np.nan)
    labels[[0, 1, 2, 640]] = [0, 0, 0, 5]
    weak = al.strategy_order("classifier", s, x, labels, 10, {"classifier_c": 1.0}, seed=0)
    np.testing.assert_array_equal(weak, al.order_by(al.classifier_priority(s, x, labels, c=1.0).priority, s))
    default = al.strategy_order("classifier", s, x, labels, 10, {}, seed=0)
    np.testing.assert_array_equal(default, al.order_by(al.classifier_priority(s, x, labels, c=0.1).priority, s))
    assert not np.array_equal(weak[:20], default[:20])
