"""The whole workflow, run by Snakemake on a tiny config in a temporary directory."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

pytest.importorskip("firstgalaxydata")

REPO = Path(__file__).resolve().parents[2]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]

# The workflow's test config (.test/, the workflow catalogue's convention): every run here
# is of that config, in a temporary copy of .test/.
TINY_CONFIG = yaml.safe_load((REPO / ".test" / "config" / "config.yaml").read_text())


def snakemake(workdir: Path, *args: str, snakefile: Path = REPO / "Snakefile") -> subprocess.CompletedProcess[str]:
    return checked_run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(workdir), *args]
    )


def console(subcommand: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`byol-discovery SUBCOMMAND ARGS`, the console command, as the installed script runs it."""
    return checked_run([sys.executable, "-m", "byol_discovery.cli", subcommand, *args])


def checked_run(command: list[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, (
        f"{' '.join(command[2:])} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    )
    return result


def planned_jobs(output: str) -> set[str]:
    """Rule names in the 'Job stats' table of a dry run (none when there is nothing to do)."""
    if "Job stats:" not in output:
        return set()
    table = output.split("Job stats:", 1)[1].split("total", 1)[0]
    return {match.group(1) for match in re.finditer(r"^(\w+)\s+\d+\s*$", table, re.MULTILINE)}


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config").mkdir(exist_ok=True)
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("workflow")
    write_config(workdir, TINY_CONFIG)
    # The console command's two jobs: the run (a later --cores replaces its --cores all) and the report.
    console("run", "--cores", "2", "--directory", str(workdir))
    console("report", "results/report.html", "--directory", str(workdir))
    return workdir


pytestmark = pytest.mark.slow


def test_every_output_is_there(finished_run: Path) -> None:
    results = finished_run / "results"
    for dataset in ("first", "sim_optical"):
        for path in (
            "preprocess/store.h5",
            "preprocess/quarantine.csv",
            "train/model.pt",
            "train/history.csv",
            "train/loss.png",
            "features/features.h5",
            "features/features_pca.h5",
            "neighbours/neighbours.h5",
            "validate/knn_accuracy.csv",
            "validate/knn_accuracy.png",
            "validate/confusion.png",
            "cluster/assignments.csv",
            "cluster/assignments.ecsv",
            "cluster/summary.csv",
            "cluster/scores.csv",
            "cluster/map_clusters.png",
            "cluster/map_labels.png",
            "cluster/gallery_hdbscan.png",
            "cluster/gallery_gmm.png",
            "cluster/gallery_gmm_merged.png",
            "cluster/map_gmm_merged.png",
            "anomaly/ranking.csv",
            "anomaly/ranking.ecsv",
            "anomaly/top.png",
            "anomaly/target_recovery.csv",
            "active_learning/ranking.csv",
            "active_learning/ranking.ecsv",
            "active_learning/next.png",
            "active_learning/discovery_curve.csv",
            "active_learning/discovery_summary.csv",
            "active_learning/discovery_curve.png",
            "logs/{}/train.log",
            "benchmarks/{}/train.tsv",
        ):
            target = results / path.format(dataset) if "{}" in path else results / dataset / path
            assert target.is_file() and target.stat().st_size > 0, f"missing {target}"


def test_report_holds_every_section_and_the_provenance(finished_run: Path) -> None:
    report = (finished_run / "results" / "report.html").read_text(errors="replace")
    for needle in ("knn_accuracy", "gallery_hdbscan", "top.png", "loss.png", "provenance.html", "quarantine"):
        assert needle in report, f"{needle} missing from the report"
    # The home page: each dataset's key figures, the very rows of its rounded tables.
    for dataset in ("first", "sim_optical"):
        for table in ("accuracy", "targets_found"):
            rows = pd.read_csv(finished_run / "results" / dataset / "key_figures" / f"{table}.csv", dtype=str)
            assert len(rows) >= 2
            first_row = "".join(f"<td>{cell}</td>\\n" for cell in rows.iloc[0].astype(str))
            assert first_row.replace("±", "\\u00b1") in report, f"{dataset} {table} not on the home page"
    provenance = (finished_run / "results" / "provenance.html").read_text()
    assert "git commit" in provenance and "torch" in provenance and "cpu" in provenance


def test_store_features_and_tables_agree(finished_run: Path) -> None:
    results = finished_run / "results" / "sim_optical"
    with h5py.File(results / "preprocess" / "store.h5") as store:
        ids = store["ids"].asstr()[:]
        assert store["images"].shape == (240, 3, 32, 32) and store["images"].dtype == np.uint8
    with h5py.File(results / "features" / "features.h5") as features:
        assert features["features"].shape == (240, 512)
        assert np.isfinite(features["features"][:]).all()
        assert list(features["ids"].asstr()[:]) == list(ids)
    assignments = pd.read_csv(results / "cluster" / "assignments.csv")
    assert set(assignments["id"]) == set(ids)
    assert (assignments["hdbscan_soft"] >= 0).all() or (assignments["hdbscan"] == -1).all()
    scores = pd.read_csv(results / "cluster" / "scores.csv").set_index("method")
    assert scores.loc["gmm_merged", "n_clusters"] <= scores.loc["gmm", "n_clusters"]
    assert scores.loc["gmm_merged", "groups_before_merging"] == scores.loc["gmm", "n_clusters"]
    assert set(pd.read_csv(results / "anomaly" / "ranking.csv")["id"]) == set(ids)


def test_ranked_tables_carry_sky_positions_also_as_ecsv_with_units(finished_run: Path) -> None:
    from astropy.table import Table

    results = finished_run / "results" / "sim_optical"
    catalogue = pd.read_csv(finished_run / "data" / "sim_optical" / "catalogue.csv", dtype={"id": str}).set_index("id")
    for table in ("anomaly/ranking", "active_learning/ranking", "cluster/assignments"):
        csv = pd.read_csv(results / f"{table}.csv", dtype={"id": str})
        np.testing.assert_allclose(csv["ra"], catalogue.loc[csv["id"], "ra"])
        np.testing.assert_allclose(csv["dec"], catalogue.loc[csv["id"], "dec"])
        ecsv = Table.read(results / f"{table}.ecsv")
        assert str(ecsv["ra"].unit) == "deg" and list(ecsv["id"]) == csv["id"].tolist()
        if table != "cluster/assignments":
            assert "is_rare" not in csv.columns, "the anomaly target stays out of the lists a person labels from"


def test_knn_beats_chance_on_the_simulated_classes(finished_run: Path) -> None:
    table = pd.read_csv(finished_run / "results" / "sim_optical" / "validate" / "knn_accuracy.csv")
    assert set(table["representation"]) == {"byol", "pixel_pca", "random_init"}
    byol = table[(table["representation"] == "byol") & (table["metric"] == "cosine")].iloc[0]
    assert byol["accuracy_mean"] > byol["chance"] + 0.05


def test_planted_rarities_score_above_the_median(finished_run: Path) -> None:
    ranking = pd.read_csv(finished_run / "results" / "sim_optical" / "anomaly" / "ranking.csv")
    assert ranking["isolation_forest"].between(0, 5).all()
    assert "is_target" not in ranking.columns, "no catalogue truth in the list a person labels"
    catalogue = pd.read_csv(finished_run / "data" / "sim_optical" / "catalogue.csv", dtype={"id": str})
    rare = ranking[ranking["id"].isin(catalogue.loc[catalogue["is_rare"] == 1, "id"])]
    assert len(rare) == 24
    assert rare["isolation_forest"].median() > ranking["isolation_forest"].median()


def test_training_history_has_one_row_per_epoch(finished_run: Path) -> None:
    history = pd.read_csv(finished_run / "results" / "first" / "train" / "history.csv")
    assert history["epoch"].tolist() == [1]
    assert np.isfinite(history["train_loss"]).all()
    assert history["knn_probe"].between(0, 1).all(), "the kNN probe ran on the labelled FIRST images"
    assert not (finished_run / "results" / "first" / "train" / "model.pt.resume").exists()


def test_nothing_to_do_after_a_complete_run(finished_run: Path) -> None:
    assert "Nothing to be done" in snakemake(finished_run, "-n").stdout + snakemake(finished_run, "-n").stderr


def test_changing_a_clustering_parameter_reruns_only_clustering(finished_run: Path) -> None:
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    config["cluster"]["hdbscan"]["min_cluster_size"] = 12
    write_config(finished_run, config)
    try:
        out = snakemake(finished_run, "-n")
        # provenance.html records the resolved config, so any config change refreshes it.
        assert planned_jobs(out.stdout + out.stderr) == {"cluster", "provenance", "default"}
        config["datasets"]["first"]["train"] = {"epochs": 2}
        write_config(finished_run, config)
        out = snakemake(finished_run, "-n")
        assert planned_jobs(out.stdout + out.stderr) == {
            "train",
            "features",
            "validate",
            "cluster",
            "neighbours",
            "anomaly",
            "active_learning",
            "key_figures",
            "provenance",
            "default",
        }
        assert "output: results/sim_optical/train/model.pt" not in out.stdout, "the other dataset is untouched"
    finally:
        write_config(finished_run, TINY_CONFIG)


def test_a_speed_setting_reruns_no_stage(finished_run: Path) -> None:
    """More preprocessing workers make the same store faster: they must not rerun training."""
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    config["preprocess"]["workers"] = 2
    write_config(finished_run, config)
    try:
        out = snakemake(finished_run, "-n")
    finally:
        write_config(finished_run, TINY_CONFIG)
    assert planned_jobs(out.stdout + out.stderr) == {"provenance", "default"}


def test_editing_a_package_module_reruns_only_the_stages_that_run_it(finished_run: Path) -> None:
    """anomaly_scores.py is imported by the anomaly and active-learning stages (found from their
    imports, not a hand-kept list): a newer file reruns those two, not training."""
    module = REPO / "workflow" / "byol_discovery" / "anomaly_scores.py"
    source = module.read_bytes()
    # Snakemake compares the content of small inputs (a touch alone reruns nothing), so edit it.
    module.write_bytes(source + b"# an edit\n")
    try:
        out = snakemake(finished_run, "-n")
    finally:
        module.write_bytes(source)
    assert planned_jobs(out.stdout + out.stderr) == {
        "anomaly", "active_learning", "key_figures", "provenance", "default"
    }


def test_moving_the_project_reruns_nothing(finished_run: Path, tmp_path: Path) -> None:
    """A checkout moved to scratch or cloned again is the same code: no stage reruns (the
    provenance page, which names the checkout's commit, may refresh)."""
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy2(REPO / "Snakefile", moved)
    for folder in ("workflow", "envs"):
        shutil.copytree(REPO / folder, moved / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = snakemake(finished_run, "-n", snakefile=moved / "Snakefile")
    assert planned_jobs(out.stdout + out.stderr) <= {"provenance", "default"}, out.stdout[-3000:]


def test_simulated_person_finds_at_least_as_many_targets_as_a_random_order(finished_run: Path) -> None:
    results = finished_run / "results" / "sim_optical" / "active_learning"
    summary = pd.read_csv(results / "discovery_summary.csv").set_index("strategy")
    assert set(summary.index) == {"unsupervised", "neighbour_score", "gp_ei", "classifier", "random"}
    assert (summary["inspected"] == 30).all()
    assert summary.loc["neighbour_score", "found"] >= summary.loc["random", "found"]
    assert summary.loc["classifier", "found"] >= summary.loc["random", "found"]
    ranking = pd.read_csv(results / "ranking.csv")
    assert len(ranking) == 240 and ranking["label"].isna().all()


def test_writing_labels_reruns_only_active_learning(finished_run: Path) -> None:
    ids = pd.read_csv(finished_run / "results" / "sim_optical" / "active_learning" / "ranking.csv")["id"][:3]
    labels = finished_run / "data" / "sim_optical" / "labels.csv"
    rows = "".join(f"{object_id},{score}\n" for object_id, score in zip(ids, (5, 0, 2), strict=True))
    labels.write_text("id,label\n" + rows)
    try:
        out = snakemake(finished_run, "-n")
        # The provenance page follows every stage's outputs, so it is refreshed too, and the
        # report's key figures include the simulated person's.
        assert planned_jobs(out.stdout + out.stderr) == {"active_learning", "key_figures", "provenance", "default"}
        assert "output: results/sim_optical/active_learning/ranking.csv" in out.stdout
        assert "output: results/first/active" not in out.stdout, "the other dataset is untouched"
    finally:
        labels.unlink()


def test_slurm_profile_dry_run_asks_a_gpu_for_training_only(finished_run: Path) -> None:
    out = snakemake(finished_run, "-n", "--forceall", "--profile", str(REPO / "profiles" / "slurm"))
    jobs = re.findall(r"^(?:local)?rule (\w+):\n(.*?)(?=^\S|\Z)", out.stdout, re.MULTILINE | re.DOTALL)
    resources = {name: re.search(r"resources: (.*)", body).group(1) for name, body in jobs if "resources:" in body}
    assert "gpu=1" in resources["train"] and "cpus_per_gpu=8" in resources["train"]
    # cpus_per_task would win over cpus_per_gpu in the plugin, leaving the GPU job 2 CPUs.
    assert "cpus_per_task" not in resources["train"]
    assert [name for name, text in resources.items() if "gpu=" in text] == ["train"]


@pytest.mark.parametrize(
    ("section", "setting", "value", "named"),
    [
        ((), ("train", "epochs"), 0, ["epochs"]),
        ((), ("clusters", "hdbscan"), {}, ["clusters"]),
        ((), ("cluster", "hdbscan", "min_cluster_sise"), 10, ["min_cluster_sise"]),
        (("datasets", "first"), ("cluster", "hdbscan", "min_cluster_sise"), 10,
         ["datasets.first.cluster.hdbscan", "min_cluster_sise"]),
        (("datasets", "sim_optical"), ("active_learning", "method"), "neighbor_score",
         ["datasets.sim_optical.active_learning.method", "neighbor_score"]),
        (("datasets", "first"), ("features", "pca_varience"), 0.9, ["datasets.first.features", "pca_varience"]),
        (("datasets", "sim_optical"), ("source", "n_object"), 50, ["datasets.sim_optical.source", "n_object"]),
    ],
)
def test_bad_config_is_rejected_with_the_offending_key(
    tmp_path: Path, section: tuple[str, ...], setting: tuple[str, ...], value: object, named: list[str]
) -> None:
    """A misspelt or out-of-range setting, global or under a dataset, stops the run before
    anything starts, naming it (rather than being ignored for its default)."""
    config = yaml.safe_load(yaml.safe_dump(TINY_CONFIG))
    where = config
    for key in (*section, *setting[:-1]):
        where = where.setdefault(key, {})
    where[setting[-1]] = value
    write_config(tmp_path, config)
    result = subprocess.run([*SNAKEMAKE, "--directory", str(tmp_path), "-n"], capture_output=True, text=True)
    assert result.returncode != 0
    for text in named:
        assert text in result.stdout + result.stderr, result.stderr[-2000:]


def test_workflow_lints_clean() -> None:
    result = subprocess.run([*SNAKEMAKE, "--lint"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and "good condition" in result.stdout + result.stderr, result.stdout + result.stderr
