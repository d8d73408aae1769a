"""Scale benchmark of the discovery stages: clustering, anomaly ranking, active learning.

Generates N x 512 synthetic "BYOL-like" features (a clustered low-dimensional latent space
pushed through a random non-linear map to 512 dimensions, plus 0.5 % rare objects in small
far-away groups that play the catalogue's targets), reduces them with a randomised PCA fit
on a subsample, then runs the real stage functions (``byol_discovery.stages``) on them, each
in a fresh process limited to ``--threads`` BLAS/OpenMP threads, and prints wall time and
peak resident memory per step.

    python benchmarks/bench_discovery.py                 # 300,000 x 512, 2 threads
    python benchmarks/bench_discovery.py --n 20000       # a quick check

Not part of the test suite. Everything is seeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

STEPS = ("generate", "pca", "cluster", "rank_anomalies", "active_learning")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def _settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Stage settings for N objects: cluster sizes scaled to N, everything seeded."""
    min_cluster = max(25, args.n // 1000)
    return {
        "cluster": {
            "label_column": "family", "max_dims": args.pca_dims, "seed": 0, "gallery_per_cluster": 8,
            "hdbscan": {"min_cluster_size": min_cluster, "min_samples": 10},
            "gmm": {"max_components": 20, "weight_concentration_prior": 0.5, "n_init": 1,
                    "max_fit_samples": 50_000},
            "stability": {"n_seeds": 2, "n_subsamples": 1, "subsample_fraction": 0.8},
        },
        "anomaly": {"n_estimators": 200, "lof_neighbors": 50, "top_n": 40, "seed": 0,
                    "target": {"column": "is_rare", "values": [1]}},
        "active_learning": {
            "method": "neighbour_score", "score": "isolation_forest", "max_dims": args.pca_dims,
            "n_estimators": 200, "alpha": 1.0, "xi": 0.01, "top_n": 40, "seed": 0,
            "simulate": {"rounds": args.rounds, "batch": args.batch, "target_label": 5, "other_label": 0},
        },
    }


# ----------------------------------------------------------------------------- steps


def generate(work: Path, args: argparse.Namespace) -> str:
    """features.h5 (N x dim float32) and a store of tiny 1x8x8 images with a catalogue."""
    import h5py
    import numpy as np
    from byol_discovery.io.store import save_features

    rng = np.random.default_rng(0)
    n, latent_dim, n_families = args.n, 16, 12
    n_rare = max(10, n // 200)
    weights = rng.dirichlet(np.full(n_families, 2.0))
    family = rng.choice(n_families, size=n, p=weights)
    centres = rng.normal(0, 4, (n_families, latent_dim))
    rare_centres = rng.normal(0, 4, (5, latent_dim)) * 1.5  # rarities: small groups off the main ones
    is_rare = np.zeros(n, dtype=np.int64)
    is_rare[rng.choice(n, size=n_rare, replace=False)] = 1
    projection = rng.normal(0, 1 / np.sqrt(latent_dim), (latent_dim, args.dim)).astype(np.float32)
    features = np.empty((n, args.dim), dtype=np.float32)
    for start in range(0, n, 50_000):  # in blocks: memory stays at one output matrix
        stop = min(start + 50_000, n)
        z = centres[family[start:stop]] + rng.normal(0, 1, (stop - start, latent_dim))
        rare = is_rare[start:stop] == 1
        z[rare] = rare_centres[rng.integers(0, 5, rare.sum())] + rng.normal(0, 0.5, (rare.sum(), latent_dim))
        hidden = np.maximum(z.astype(np.float32) @ projection, 0)  # ReLU, like a pooled CNN output
        features[start:stop] = hidden + rng.normal(0, 0.05, hidden.shape).astype(np.float32)
    ids = np.array([f"obj{i:07d}" for i in range(n)], dtype=object)
    save_features(work / "features.h5", ids, features, {"representation": "synthetic"})
    string = h5py.string_dtype("utf-8")
    with h5py.File(work / "store.h5", "w") as store:
        images = rng.integers(0, 256, (n, 1, 8, 8), dtype=np.uint8)
        store.create_dataset("images", data=images, chunks=(1024, 1, 8, 8))
        store.create_dataset("ids", data=ids, dtype=string)
        store.create_dataset("catalogue/family", data=family.astype(np.int64))
        store.create_dataset("catalogue/is_rare", data=is_rare)
    return f"{n} x {args.dim} features, {n_rare} rare"


def pca(work: Path, args: argparse.Namespace) -> str:
    """Randomised PCA fit on a 50k subsample, applied in blocks: bounded memory at any N."""
    import h5py
    import numpy as np
    from byol_discovery.io.store import save_features
    from sklearn.decomposition import PCA

    with h5py.File(work / "features.h5", "r") as file:
        data, ids = file["features"], file["ids"].asstr()[:].astype(object)
        n = data.shape[0]
        rng = np.random.default_rng(0)
        fit_rows = np.sort(rng.choice(n, size=min(n, 50_000), replace=False))
        model = PCA(n_components=args.pca_dims, svd_solver="randomized", random_state=0).fit(data[fit_rows])
        reduced = np.concatenate([model.transform(data[s : s + 50_000]) for s in range(0, n, 50_000)])
    save_features(work / "features_pca.h5", ids, reduced.astype(np.float32), {"representation": "pca"})
    return f"{args.pca_dims} components, {100 * model.explained_variance_ratio_.sum():.1f} % of the variance"


def cluster(work: Path, args: argparse.Namespace) -> str:
    import pandas as pd
    from byol_discovery import stages

    names = ("assignments", "summary", "scores", "map_clusters", "map_labels", "gallery_hdbscan", "gallery_gmm")
    outputs = {k: work / "clusters" / f"{k}.{'csv' if k in names[:3] else 'png'}" for k in names}
    stages.cluster(work / "store.h5", work / "features_pca.h5", outputs, _settings(args)["cluster"])
    scores = pd.read_csv(outputs["scores"]).set_index("method")
    return "; ".join(
        f"{m}: {int(r.n_clusters)} clusters, noise {r.noise_fraction:.2f}, ARI {r.adjusted_rand:.2f}, "
        f"stability {r.stability_ari:.2f}"
        for m, r in scores.iterrows()
    )


def rank_anomalies(work: Path, args: argparse.Namespace) -> str:
    import pandas as pd
    from byol_discovery import stages

    outputs = {"ranking": work / "anomalies" / "ranking.csv", "gallery": work / "anomalies" / "top.png",
               "evaluation": work / "anomalies" / "target_recovery.csv"}
    stages.rank_anomalies(work / "store.h5", work / "features_pca.h5", outputs, _settings(args)["anomaly"])
    recovery = pd.read_csv(outputs["evaluation"]).set_index("scorer")
    return "; ".join(
        f"{s}: {int(r.targets_found)} of top {int(r.top_n)} rare (random {r.expected_random:.1f})"
        for s, r in recovery.iterrows()
    )


def active_learning(work: Path, args: argparse.Namespace) -> str:
    import pandas as pd
    from byol_discovery import stages

    names = {"ranking": "ranking.csv", "gallery": "next.png", "curve": "discovery_curve.csv",
             "summary": "discovery_summary.csv", "curve_plot": "discovery_curve.png"}
    outputs = {k: work / "active" / v for k, v in names.items()}
    settings = _settings(args)
    stages.active_learning(work / "anomalies" / "ranking.csv", work / "features_pca.h5", work / "store.h5", None,
                           outputs, settings["active_learning"], target=settings["anomaly"]["target"])
    summary = pd.read_csv(outputs["summary"]).set_index("strategy")
    return "; ".join(f"{s}: {int(r.found)}/{int(r.inspected)}" for s, r in summary.iterrows())


# ----------------------------------------------------------------------------- driver


def run_step(step: str, work: Path, args: argparse.Namespace) -> None:
    """Child process: run one step, print one JSON line with its time and peak memory."""
    logging.basicConfig(level=logging.INFO, format="    %(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    start = time.perf_counter()
    note = globals()[step](work, args)
    wall = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux: MiB
    print(json.dumps({"step": step, "wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb), "note": note}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000, help="objects")
    parser.add_argument("--dim", type=int, default=512, help="feature length")
    parser.add_argument("--pca-dims", type=int, default=32, help="PCA components the stages work on")
    parser.add_argument("--threads", type=int, default=2, help="BLAS/OpenMP threads per step")
    parser.add_argument("--rounds", type=int, default=5, help="simulated labelling rounds")
    parser.add_argument("--batch", type=int, default=20, help="objects labelled per round")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temp dir)")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # internal: child process
    args = parser.parse_args()
    if args.step:
        run_step(args.step, args.workdir, args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_discovery_") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **{name: str(args.threads) for name in THREAD_VARIABLES}}
        print(f"bench_discovery: n={args.n} dim={args.dim} pca_dims={args.pca_dims} threads={args.threads}")
        results = []
        for step in STEPS:
            command = [sys.executable, __file__, "--step", step, "--workdir", str(work), "--n", str(args.n),
                       "--dim", str(args.dim), "--pca-dims", str(args.pca_dims), "--rounds", str(args.rounds),
                       "--batch", str(args.batch)]
            done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
            row = results[-1]
            print(f"{row['step']:<16} {row['wall_s']:>8.1f} s {row['peak_rss_mb']:>8d} MiB  {row['note']}", flush=True)
        total = sum(r["wall_s"] for r in results)
        print(f"{'total':<16} {total:>8.1f} s {max(r['peak_rss_mb'] for r in results):>8d} MiB (peak of any step)")


if __name__ == "__main__":
    main()
