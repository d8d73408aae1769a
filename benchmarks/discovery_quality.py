"""Discovery benchmark: do the anomaly scores, the learners and the clusters find what the
catalogue knows, and how much of what the features allow?

Scenarios with known rare targets:

- FIRST with each of its four classes in turn cut down to ``--share`` (2 %) of the set,
  ``--seeds`` random draws each;
- sim_optical's planted rarities (``is_rare``);
- MiraBest's rare morphologies, only where a dataset named ``mirabest`` with the full
  release is in the config and its features exist (skipped otherwise).

For each scenario and representation (the run's BYOL features, pixel PCA, a randomly
initialised network; each reduced to the PCA components keeping 95 % of the variance, at
most ``cluster.max_dims``, as the pipeline does) it prints the enrichment of each anomaly
score in its top 5 %, the targets a simulated person finds after 100 and 200 inspected per
strategy, and the ceiling: targets in the top 200 of a cross-validated classifier trained
with every label. The cluster table gives HDBSCAN's groups, noise fraction and NMI and the
mixture's components and groups after Hellinger merging, per representation, at the
config's settings. Needs a finished run (``snakemake --cores 2``) for the stores and BYOL
features:

    nice python benchmarks/discovery_quality.py                       # results/, 3 seeds
    nice python benchmarks/discovery_quality.py --seeds 1 --markdown docs/discovery_table.md

Everything is seeded. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))  # the package, installed or not

from byol_discovery import active_learning_strategies, anomaly_scores, clustering, discovery, evaluation  # noqa: E402
from byol_discovery.config import stage_settings  # noqa: E402
from byol_discovery.io.store import ImageStore, load_features  # noqa: E402

SCORES = ("isolation_forest", "lof", "knn_distance")
STRATEGIES = ("unsupervised", "neighbour_score", "gp_ei", "classifier", "random")
CHECKPOINTS = (100, 200)
# Rare morphologies of MiraBest (its hybrid and unclassifiable sources aside).
MIRABEST_RARE = ("double-double", "wide-angle tail", "head-tail")


def representations(store: Path, byol: Path, max_dims: int | None, seed: int) -> dict[str, np.ndarray]:
    """BYOL's PCA features and the two baselines, each reduced as the pipeline reduces BYOL's."""
    from byol_discovery.feature_extraction import extract_features, random_backbone

    _, byol_pca, attrs = load_features(byol)
    with ImageStore(store) as opened:
        images = opened.load_images()
    arch = str(attrs.get("arch", "resnet18"))
    backbone = random_backbone(arch, images.shape[1], bool(attrs.get("small_stem", False)), seed)
    raw = {
        "pixel_pca": evaluation.pixel_pca_features(images, 50, seed=seed),
        "random_init": extract_features(backbone, images, 256, "cpu"),
    }
    reduced = {"byol": byol_pca}
    reduced.update({name: clustering.reduce_pca(values, 0.95, seed)[0] for name, values in raw.items()})
    return {name: clustering.leading_components(values, max_dims) for name, values in reduced.items()}


def scenario_row(x: np.ndarray, is_target: np.ndarray, settings: dict[str, Any], score: str,
                 strategies: tuple[str, ...], seed: int, batch: int) -> dict[str, float]:
    """Enrichment per score, targets found per strategy at each checkpoint, and the ceiling."""
    anomaly_settings, learner_settings = settings["anomaly"], settings["active_learning"]
    scores = {
        "isolation_forest": anomaly_scores.isolation_forest_scores(x, anomaly_settings["n_estimators"], seed),
        "lof": anomaly_scores.lof_scores(x, anomaly_settings["lof_neighbors"]),
        "knn_distance": anomaly_scores.knn_distance_scores(x, anomaly_settings.get("knn_neighbors", 10)),
    }
    row: dict[str, float] = {"objects": len(x), "targets": int(is_target.sum())}
    row.update({f"enrich_{name}": discovery.enrichment(values, is_target, 0.05) for name, values in scores.items()})
    rounds = max(CHECKPOINTS) // batch
    curves = active_learning_strategies.discovery_curves(scores[score], x, is_target, rounds, batch, learner_settings,
                                                         seed, strategies)
    for strategy, curve in curves.groupby("strategy", sort=False):
        for n in CHECKPOINTS:
            row[f"{strategy}@{n}"] = int(curve["found"].iloc[min(n, len(curve)) - 1])
    row["ceiling@200"] = discovery.ceiling_found(x, is_target, max(CHECKPOINTS), seed=seed)
    return row


def scenarios(
    dataset: str, catalogue: pd.DataFrame, args: argparse.Namespace
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, row indices, target flags on those rows) for one dataset."""
    if dataset == "first":
        out = []
        for rare in sorted(catalogue["label"].astype(str).unique()):
            for seed in range(args.seeds):
                rows = discovery.rare_class_scenario(catalogue["label"], rare, args.share, seed)
                flags = catalogue["label"].astype(str).to_numpy()[rows] == rare
                out.append((f"first {rare} {args.share:.0%} s{seed}", rows, flags))
        return out
    if dataset == "sim_optical":
        flags = catalogue["is_rare"].astype(int).to_numpy() == 1
        return [("sim_optical planted rarities", np.arange(len(catalogue)), flags)]
    if dataset == "mirabest":
        label = catalogue.get("morphology", catalogue.get("label"))
        flags = label.astype(str).str.lower().isin(MIRABEST_RARE).to_numpy()
        if flags.sum() < 2:
            print("mirabest: fewer than 2 rare-morphology sources: not the full release, skipped")
            return []
        return [("mirabest rare morphologies", np.arange(len(catalogue)), flags)]
    return []


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table (pandas' to_markdown would need tabulate, which the project does not declare)."""
    cells = [[str(c) for c in frame.columns]] + [[f"{v:.2f}" if isinstance(v, float) else str(v) for v in row]
                                                 for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join([lines[0], "|" + "---|" * len(frame.columns), *lines[1:]])


def goal_lines(table: pd.DataFrame, learner: str, base: str) -> list[str]:
    """The issue's goal per scenario family, on BYOL: learner >= half the ceiling and >= twice the score alone."""
    lines = []
    byol = table[table["representation"] == "byol"].copy()
    byol["family"] = byol["scenario"].str.replace(r" s\d+$", "", regex=True)
    for family, rows in byol.groupby("family", sort=False):
        found, ceiling, alone = rows[f"{learner}@200"].mean(), rows["ceiling@200"].mean(), rows[f"{base}@200"].mean()
        ok = found >= 0.5 * ceiling and found >= 2 * alone
        lines.append(f"{family}: {learner} {found:.1f} vs ceiling {ceiling:.1f} and {base} {alone:.1f} -> "
                     f"{'met' if ok else 'NOT met'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--results", type=Path, default=None, help="results directory (default: the config's)")
    parser.add_argument("--datasets", nargs="+", default=["first", "sim_optical", "mirabest"])
    parser.add_argument("--seeds", type=int, default=3, help="draws of each FIRST scenario")
    parser.add_argument("--share", type=float, default=0.02, help="share of the set the rare FIRST class is cut to")
    parser.add_argument("--score", default=None, help="anomaly score the learners start from (default: the config's)")
    parser.add_argument("--learner", default="classifier", help="strategy the goal lines judge")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--batch", type=int, default=20, help="objects labelled per round")
    parser.add_argument("--no-clusters", action="store_true", help="skip the cluster table")
    parser.add_argument("--no-scenarios", action="store_true", help="only the cluster table")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the tables here (markdown)")
    args = parser.parse_args()

    config = yaml.safe_load(args.config.read_text())
    results = args.results or (REPO / config.get("results_dir", "results"))
    seed = int(config.get("seed", 0))
    table_rows, cluster_rows = [], []
    for dataset in args.datasets:
        store, byol = results / dataset / "preprocess" / "store.h5", results / dataset / "features" / "features_pca.h5"
        if dataset not in config["datasets"] or not byol.exists():
            print(f"{dataset}: not configured or no features in {results} (run the workflow first): skipped")
            continue
        settings = {stage: stage_settings(config, dataset, stage)
                    for stage in ("cluster", "anomaly", "active_learning")}
        score = args.score or settings["active_learning"].get("score", "isolation_forest")
        with ImageStore(store) as opened:
            catalogue = opened.catalogue()
        clock = time.perf_counter()
        features = representations(store, byol, settings["cluster"].get("max_dims"), seed)
        print(f"{dataset}: representations {', '.join(f'{k} {v.shape[1]}-d' for k, v in features.items())} "
              f"({time.perf_counter() - clock:.0f} s)", flush=True)
        if not args.no_clusters and settings["cluster"].get("label_column"):
            cluster = settings["cluster"]
            hdb, gmm = cluster.get("hdbscan", {}), cluster.get("gmm", {})
            truth = catalogue[cluster["label_column"]].astype(str).to_numpy()
            for name, x in features.items():
                figures = discovery.cluster_figures(
                    x, truth, hdb.get("min_cluster_fraction", 0.01), hdb.get("min_samples", 5),
                    gmm.get("merge_threshold", 0.9), seed, space=hdb.get("space", "umap"),
                    umap_settings=hdb.get("umap"), max_components=gmm.get("max_components", 20),
                    weight_concentration_prior=gmm.get("weight_concentration_prior", 0.5),
                    n_init=gmm.get("n_init", 3),
                )
                cluster_rows.append({"dataset": dataset, "representation": name, **figures})
                print(pd.DataFrame([cluster_rows[-1]]).round(3).to_string(index=False, header=len(cluster_rows) == 1),
                      flush=True)
        for name, rows, is_target in [] if args.no_scenarios else scenarios(dataset, catalogue, args):
            for representation, x in features.items():
                row = scenario_row(x[rows], is_target, settings, score, tuple(args.strategies), seed, args.batch)
                table_rows.append({"scenario": name, "representation": representation, "score": score, **row})
                print(pd.DataFrame([table_rows[-1]]).round(2).to_string(index=False, header=len(table_rows) == 1),
                      flush=True)
    if not table_rows and not cluster_rows:
        raise SystemExit("nothing ran: finish a run first (snakemake --cores 2)")
    parts = []
    if table_rows:
        table = pd.DataFrame(table_rows)
        family = table["scenario"].str.replace(r" s\d+$", "", regex=True)
        summary = table.drop(columns=["scenario", "score"]).groupby([family, table["representation"]],
                                                                    sort=False).mean()
        print("\nMean over seeds:\n" + summary.round(2).to_string())
        goals = goal_lines(table, args.learner, "unsupervised")
        print("\nGoal (BYOL, after 200 inspected):\n" + "\n".join(goals))
        parts += [f"Scenario table (score the learners start from: {table['score'].iloc[0]}; mean over seeds)\n",
                  markdown(summary.reset_index()), "\nGoal lines\n", "\n".join(f"- {line}" for line in goals)]
    if cluster_rows:
        print("\nClusters:\n" + pd.DataFrame(cluster_rows).round(3).to_string(index=False))
        parts += ["\nClusters\n", markdown(pd.DataFrame(cluster_rows))]
    if args.markdown:
        args.markdown.write_text("\n".join(parts) + "\n")

if __name__ == "__main__":
    main()
