"""Scale benchmark of the discovery stages: neighbours, clustering, anomaly ranking, active learning.

Generates N x 512 synthetic "BYOL-like" features (a clustered low-dimensional latent space
pushed through a random non-linear map to 512 dimensions, plus 0.5 % rare objects in small
far-away groups that play the catalogue's targets), written to HDF5 block by block, reduces
them with a PCA fitted on a subsample and applied in blocks, then runs the real stage
functions (``byol_discovery.stages``) on them, each in a fresh process limited to the
BLAS/OpenMP threads its workflow rule has (``threads:``, as Snakemake sets them), and prints
wall time, CPU time and peak resident memory per step.

The stage settings are the pipeline's: the config schema's defaults, filled in and merged as
the rules get them, under a dataset section holding only what a user sets at this scale
(``SCALE_SETTINGS``, the block docs/scale.md shows; ``--defaults`` leaves it out) and what
the synthetic catalogue needs (``DATA_SETTINGS``); the run prints that section.

Two paths: ``scale`` (approximate neighbours, HDBSCAN and the mixture fitted on
``--fit-samples`` objects and the rest assigned, stability refits on subsamples) at N, and,
on the first ``--baseline-n`` objects, both ``scale`` (fitted on the same share of the
objects) and ``exact`` (every step on every object, as before this existed). The two runs at
the baseline size give the speed ratio and the agreement: recall@k of the approximate
neighbours, overlap of the top 1 % by LOF and by kNN distance, adjusted Rand index of each
clustering against the full fit.

    python benchmarks/bench_discovery.py                          # 300,000 x 512, baseline 30,000
    python benchmarks/bench_discovery.py --baseline-n 300000      # the exact path at full size too (slow)
    python benchmarks/bench_discovery.py --n 4000000 --baseline-n 0 --workdir DIR   # --reuse DIR's tables later
    python benchmarks/bench_discovery.py --n 20000 --baseline-n 20000 --fit-samples 2000   # a quick check

Not part of the test suite. Everything is seeded.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "workflow"))

DATA_STEPS = ("generate", "pca")
STAGE_STEPS = ("neighbours", "cluster", "anomaly", "active_learning")
STEPS = (*DATA_STEPS, "subset", *STAGE_STEPS)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
BLOCK = 50_000  # rows generated, transformed or copied at a time


SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
# What docs/scale.md ("What to set at this scale") tells a user with a few hundred thousand
# objects to set; every other setting is the schema's default, as the pipeline runs it.
SCALE_SETTINGS: dict[str, Any] = {
    "cluster": {
        "max_dims": 16,
        "hdbscan": {"space": "pca", "max_fit_samples": 20_000},
        "gmm": {"max_fit_samples": 20_000, "n_init": 1},
        "stability": {"n_seeds": 2, "n_subsamples": 1},
        "map": "pca",
    },
    "active_learning": {"max_dims": 16},
}
# What the synthetic data needs: the columns its catalogue holds.
DATA_SETTINGS: dict[str, Any] = {
    "cluster": {"label_column": "family"},
    "anomaly": {"target": {"column": "is_rare", "values": [1]}},
}


def _dataset_section(args: argparse.Namespace) -> dict[str, Any]:
    """The benchmark's dataset section of the config: :data:`SCALE_SETTINGS` (unless
    ``--defaults``), :data:`DATA_SETTINGS`, ``--fit-samples`` and ``--rounds``. The ``exact``
    path switches every subsample and approximation off; the ``scale`` path searches the
    neighbours approximately also below ``neighbours.exact_below`` objects (the baseline),
    as ``auto`` does above it."""
    from byol_discovery.config import deep_merge

    fit = None if args.path == "exact" else args.fit_samples
    runs: dict[str, Any] = {
        "neighbours": {"method": "exact" if args.path == "exact" else "approximate"},
        "cluster": {"hdbscan": {"max_fit_samples": fit}, "gmm": {"max_fit_samples": fit}},
    }
    if args.rounds:
        runs["active_learning"] = {"simulate": {"rounds": args.rounds}}
    section = deep_merge(deep_merge({} if args.defaults else SCALE_SETTINGS, DATA_SETTINGS), runs)
    return {"source": {"type": "local"}, **section}


def _settings(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The settings of the four stages as the pipeline's rules get them: the config schema's
    defaults (filled in by Snakemake's validate, as the Snakefile does) merged with the
    dataset section (:func:`_dataset_section`) by ``stage_settings``, with the global seed."""
    from byol_discovery.config import stage_settings
    from snakemake.utils import validate

    config = {"datasets": {"bench": _dataset_section(args)}}
    validate(config, str(SCHEMA))
    # With the global seed, as the rules' params give it (workflow/rules/common.smk).
    return {stage: {**stage_settings(config, "bench", stage), "seed": config["seed"]}
            for stage in ("neighbours", "cluster", "anomaly", "active_learning")}


# ----------------------------------------------------------------------------- steps


def generate(data: Path, out: Path, args: argparse.Namespace) -> str:
    """features.h5 (N x dim float32, written block by block) and a store of tiny 1x8x8 images
    with a catalogue."""
    import numpy as np
    from byol_discovery.io.store import save_feature_blocks

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

    def blocks():
        for start in range(0, n, BLOCK):  # memory holds one block, whatever N
            stop = min(start + BLOCK, n)
            z = centres[family[start:stop]] + rng.normal(0, 1, (stop - start, latent_dim))
            rare = is_rare[start:stop] == 1
            z[rare] = rare_centres[rng.integers(0, 5, rare.sum())] + rng.normal(0, 0.5, (rare.sum(), latent_dim))
            hidden = np.maximum(z.astype(np.float32) @ projection, 0)  # ReLU, like a pooled CNN output
            yield hidden + rng.normal(0, 0.05, hidden.shape).astype(np.float32)

    ids = np.array([f"obj{i:07d}" for i in range(n)], dtype=object)
    save_feature_blocks(data / "features.h5", ids, blocks(), args.dim, {"representation": "synthetic"}, "synthetic")
    _write_store(data / "store.h5", ids, family, is_rare, rng)
    return f"{n} x {args.dim} features, {n_rare} rare"


def _write_store(path: Path, ids: Any, family: Any, is_rare: Any, rng: Any) -> None:
    import h5py
    import numpy as np

    with h5py.File(path, "w") as store:
        images = store.create_dataset("images", shape=(len(ids), 1, 8, 8), dtype=np.uint8, chunks=(1024, 1, 8, 8))
        for start in range(0, len(ids), BLOCK):
            images[start : start + BLOCK] = rng.integers(0, 256, (min(BLOCK, len(ids) - start), 1, 8, 8), np.uint8)
        store.create_dataset("ids", data=ids, dtype=h5py.string_dtype("utf-8"))
        store.create_dataset("catalogue/family", data=np.asarray(family, dtype=np.int64))
        store.create_dataset("catalogue/is_rare", data=np.asarray(is_rare, dtype=np.int64))


def pca(data: Path, out: Path, args: argparse.Namespace) -> str:
    """--pca-dims components fitted on a 50,000-row subsample, applied in blocks (the
    features stage's path above features.pca_fit_samples, at a fixed dimension)."""
    import h5py
    from byol_discovery import clustering
    from byol_discovery.io.store import save_feature_blocks
    from sklearn.decomposition import PCA

    with h5py.File(data / "features.h5", "r") as file:
        matrix, ids = file["features"], file["ids"].asstr()[:].astype(object)
        rows = clustering.fit_subsample(matrix.shape[0], 50_000, seed=0)
        model = PCA(n_components=args.pca_dims, svd_solver="randomized", random_state=0)
        model.fit(clustering.read_rows(matrix, rows))
        save_feature_blocks(data / "features_pca.h5", ids, clustering.pca_blocks(model, matrix), args.pca_dims,
                            {"representation": "pca"}, "pca")
    return f"{args.pca_dims} components, {100 * model.explained_variance_ratio_.sum():.1f} % of the variance"


def subset(data: Path, out: Path, args: argparse.Namespace) -> str:
    """The first --baseline-n objects (a random sample: rows are drawn independently) as a
    dataset of their own in ``out``."""
    import h5py
    import numpy as np
    from byol_discovery.io.store import save_features

    n = args.baseline_n
    with h5py.File(data / "features_pca.h5", "r") as file:
        ids = file["ids"].asstr()[:n].astype(object)
        save_features(out / "features_pca.h5", ids, file["features"][:n], {"representation": "pca"})
    with h5py.File(data / "store.h5", "r") as store:
        family, is_rare = store["catalogue/family"][:n], store["catalogue/is_rare"][:n]
    _write_store(out / "store.h5", ids, family, is_rare, np.random.default_rng(1))
    return f"first {n} objects"


def neighbours(data: Path, out: Path, args: argparse.Namespace) -> str:
    from byol_discovery import stages
    from byol_discovery.stages.neighbours import neighbour_count

    settings = _settings(args)
    lof_neighbors = settings["anomaly"]["lof_neighbors"]
    stages.neighbours(data / "features_pca.h5", out / "neighbours.h5", settings["neighbours"], lof_neighbors,
                            threads=rule_threads(STEP_RULES["neighbours"]))
    return f"{settings['neighbours']['method']}, k = {neighbour_count(settings['neighbours'], lof_neighbors)}"


def cluster(data: Path, out: Path, args: argparse.Namespace) -> str:
    import pandas as pd
    from byol_discovery import stages

    names = ("assignments", "summary", "scores", "map_clusters", "map_labels", "map_gmm_merged", "gallery_hdbscan",
             "gallery_gmm", "gallery_gmm_merged")
    outputs = {k: out / "cluster" / f"{k}.{'csv' if k in names[:3] else 'png'}" for k in names}
    outputs["assignments_ecsv"] = out / "cluster" / "assignments.ecsv"
    stages.cluster(data / "store.h5", data / "features_pca.h5", outputs, _settings(args)["cluster"])
    scores = pd.read_csv(outputs["scores"]).set_index("method")
    return "; ".join(
        f"{m}: {int(r.n_clusters)} clusters, fit on {int(r.fit_samples)}, noise {r.noise_fraction:.2f}, "
        f"ARI {r.adjusted_rand:.2f}, stability {r.stability_ari:.2f} ({int(r.stability_fit_samples)} per refit)"
        for m, r in scores.iterrows()
    )


def anomaly(data: Path, out: Path, args: argparse.Namespace) -> str:
    import pandas as pd
    from byol_discovery import stages

    outputs = {"ranking": out / "anomaly" / "ranking.csv", "ranking_ecsv": out / "anomaly" / "ranking.ecsv",
               "gallery": out / "anomaly" / "top.png", "evaluation": out / "anomaly" / "target_recovery.csv"}
    stages.anomaly(data / "store.h5", data / "features_pca.h5", outputs, _settings(args)["anomaly"],
                          neighbours=out / "neighbours.h5")
    recovery = pd.read_csv(outputs["evaluation"]).set_index("scorer")
    return "; ".join(
        f"{s}: {int(r.targets_found)} of top {int(r.top_n)} rare (random {r.expected_random:.1f})"
        for s, r in recovery.iterrows()
    )


def active_learning(data: Path, out: Path, args: argparse.Namespace) -> str:
    import pandas as pd
    from byol_discovery import stages

    names = {"ranking": "ranking.csv", "ranking_ecsv": "ranking.ecsv", "gallery": "next.png",
             "curve": "discovery_curve.csv",
             "summary": "discovery_summary.csv", "curve_plot": "discovery_curve.png"}
    outputs = {k: out / "active_learning" / v for k, v in names.items()}
    settings = _settings(args)
    stages.active_learning(out / "anomaly" / "ranking.csv", data / "features_pca.h5", data / "store.h5", None,
                           outputs, settings["active_learning"], target=settings["anomaly"]["target"])
    summary = pd.read_csv(outputs["summary"]).set_index("strategy")
    return "; ".join(f"{s}: {int(r.found)}/{int(r.inspected)}" for s, r in summary.iterrows())


# ----------------------------------------------------------------------------- agreement


def agreement(scale: Path, exact: Path) -> dict[str, float]:
    """How closely the scale path's answers follow the exact path's on the same objects."""
    import numpy as np
    import pandas as pd
    from byol_discovery.neighbour_search import load_neighbours, recall_at_k
    from sklearn.metrics import adjusted_rand_score

    result = {"recall_at_k": recall_at_k(load_neighbours(scale / "neighbours.h5").indices,
                                         load_neighbours(exact / "neighbours.h5").indices)}
    rankings = [pd.read_csv(path / "anomaly" / "ranking.csv", dtype={"id": str}) for path in (scale, exact)]
    top = max(1, len(rankings[0]) // 100)
    for score in ("lof", "knn_distance"):
        tops = [set(r.sort_values(score, ascending=False, kind="stable")["id"].head(top)) for r in rankings]
        result[f"{score}_top1pct_overlap"] = len(tops[0] & tops[1]) / top
    assignments = [pd.read_csv(path / "cluster" / "assignments.csv", dtype={"id": str}) for path in (scale, exact)]
    for method in ("hdbscan", "gmm"):
        result[f"{method}_ari"] = float(adjusted_rand_score(assignments[1][method], assignments[0][method]))
    return {k: round(float(v), 3) for k, v in result.items() if np.isfinite(v)}


# ----------------------------------------------------------------------------- driver


def run_step(step: str, data: Path, out: Path, args: argparse.Namespace) -> None:
    """Child process: run one step, print one JSON line with its time and peak memory."""
    logging.basicConfig(level=logging.INFO, format="    %(asctime)s %(message)s", datefmt="%H:%M:%S",
                        stream=sys.stderr)
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)  # which CPU build it tried: noise here
    start = time.perf_counter()
    note = globals()[step](data, out, args)
    wall = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    peak_mb = usage.ru_maxrss / 1024  # kB on Linux: MiB
    # CPU time: on a machine others share, wall time grows with their load, CPU time hardly.
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"step": step, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1), "peak_rss_mb": round(peak_mb),
                      "note": note}))


# The workflow rule each stage step runs as: its ``threads:`` are the step's BLAS/OpenMP threads,
# as Snakemake sets them for the rule's script.
STEP_RULES = {"neighbours": "neighbours", "cluster": "cluster", "anomaly": "anomaly",
              "active_learning": "active_learning"}


def rule_threads(rule: str) -> int:
    """The ``threads:`` of ``rule`` in workflow/rules/*.smk (an error naming the rule where none is found)."""
    for path in sorted((REPO / "workflow" / "rules").glob("*.smk")):
        found = re.search(rf"^rule {rule}:\n(?:(?!^rule ).*\n)*?\s+threads: (\d+)", path.read_text(), re.MULTILINE)
        if found:
            return int(found.group(1))
    raise ValueError(f"no rule {rule!r} with threads in workflow/rules; update bench_discovery.STEP_RULES")


# The files a step leaves, by which --reuse knows it ran before.
STEP_OUTPUTS = {"generate": "features.h5", "pca": "features_pca.h5", "neighbours": "neighbours.h5"}


def _run(step: str, data: Path, out: Path, args: argparse.Namespace, n: int, path: str, fit_samples: int
         ) -> dict | None:
    """One step in a fresh process; its row (None where --reuse finds its output already there)."""
    if args.reuse and step in STEP_OUTPUTS and (out / STEP_OUTPUTS[step]).exists():
        print(f"  {step:<16} reused: {out / STEP_OUTPUTS[step]}", flush=True)
        return None
    command = [sys.executable, __file__, "--step", step, "--data", str(data), "--out", str(out), "--n", str(n),
               "--dim", str(args.dim), "--pca-dims", str(args.pca_dims), "--threads", str(args.threads),
               "--path", path, "--fit-samples", str(fit_samples), "--baseline-n", str(args.baseline_n)]
    command += ["--rounds", str(args.rounds)] if args.rounds else []
    command += ["--defaults"] if args.defaults else []
    threads = rule_threads(STEP_RULES[step]) if step in STEP_RULES else args.threads
    env = {**os.environ, **{name: str(threads) for name in THREAD_VARIABLES}}
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(command, env=env, stdout=subprocess.PIPE, text=True, check=True)
    row = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {row['step']:<16} {row['wall_s']:>8.1f} s {row['cpu_s']:>8.1f} s CPU {row['peak_rss_mb']:>6d} MiB  "
          f"{row['note']}", flush=True)
    return row


def _stages(title: str, data: Path, out: Path, args: argparse.Namespace, n: int, path: str, fit: int
            ) -> dict[str, float]:
    """Run the four stages of one path; print and return the wall and CPU time of the three the
    goal counts (cluster, anomaly, active_learning) and of all four."""
    print(f"{title}:", flush=True)
    rows = [row for step in STAGE_STEPS if (row := _run(step, data, out, args, n, path, fit))]
    counted = [r for r in rows if r["step"] != "neighbours"]
    times = {f"{key}{'' if group is counted else '_all'}": sum(r[key] for r in group)
             for group in (counted, rows) for key in ("wall_s", "cpu_s")}
    print(f"  {'cluster+rank+al':<16} {times['wall_s']:>8.1f} s {times['cpu_s']:>8.1f} s CPU "
          f"{max(r['peak_rss_mb'] for r in rows):>6d} MiB (peak of any step); with neighbours "
          f"{times['wall_s_all']:.1f} s, {times['cpu_s_all']:.1f} s CPU", flush=True)
    # The workflow runs cluster beside anomaly -> active_learning (one thread each, 2 cores).
    wall = {r["step"]: r["wall_s"] for r in rows}
    if {"cluster", "anomaly", "active_learning"} <= set(wall):
        times["workflow_wall_s"] = max(wall["cluster"], wall["anomaly"] + wall["active_learning"])
        print(f"  {'as scheduled':<16} {times['workflow_wall_s']:>8.1f} s  on 2 cores: cluster beside "
              "anomaly -> active_learning, as Snakemake runs them (each rule has one thread)", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=300_000, help="objects")
    parser.add_argument("--baseline-n", type=int, default=30_000,
                        help="objects the exact path is compared on (0: none; the exact path takes ~15 min at 300,000)")
    parser.add_argument("--fit-samples", type=int, default=SCALE_SETTINGS["cluster"]["hdbscan"]["max_fit_samples"],
                        help="objects HDBSCAN and the mixture are fitted on at N (the baseline: the same share)")
    parser.add_argument("--dim", type=int, default=512, help="feature length")
    parser.add_argument("--pca-dims", type=int, default=32, help="PCA components (neighbours and LOF use them all)")
    parser.add_argument("--threads", type=int, default=2,
                        help="BLAS/OpenMP threads of the data steps (each stage step: its rule's threads)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="simulated labelling rounds (default: the schema's active_learning.simulate.rounds)")
    parser.add_argument("--defaults", action="store_true",
                        help="the schema's defaults only, without what docs/scale.md sets at this scale")
    parser.add_argument("--workdir", type=Path, default=None, help="keep the files here (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --workdir: keep the features, PCA and neighbours tables already there")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)  # internal: child process
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--path", choices=("scale", "exact"), default="scale", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        run_step(args.step, args.data, args.out, args)
        return
    with tempfile.TemporaryDirectory(prefix="bench_discovery_") as tmp:
        work = args.workdir or Path(tmp)
        print(f"bench_discovery: n={args.n} dim={args.dim} pca_dims={args.pca_dims} threads={args.threads} "
              f"fit_samples={args.fit_samples} baseline_n={args.baseline_n}; load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        print("settings: the schema's defaults under this dataset section:",
              json.dumps(_dataset_section(argparse.Namespace(**{**vars(args), "path": "scale"}))), flush=True)
        print("data:", flush=True)
        for step in DATA_STEPS:
            _run(step, work, work, args, args.n, "scale", args.fit_samples)
        _stages(f"scale path, {args.n} objects", work, work / "scale", args, args.n, "scale", args.fit_samples)
        if not args.baseline_n:
            return
        base = work / "baseline"
        _run("subset", work, base, args, args.n, "scale", args.fit_samples)
        fit = max(2, round(args.fit_samples * args.baseline_n / args.n))
        base_scale = _stages(f"scale path, {args.baseline_n} objects (fitted on {fit})", base, base / "scale", args,
                             args.baseline_n, "scale", fit)
        base_exact = _stages(f"exact path, {args.baseline_n} objects", base, base / "exact", args, args.baseline_n,
                             "exact", fit)
        ratio = {key: base_exact[key] / base_scale[key] for key in base_exact}
        print(f"ratio exact / scale at {args.baseline_n} objects: cluster+rank+al {ratio['wall_s']:.1f} (wall), "
              f"{ratio['cpu_s']:.1f} (CPU); with neighbours {ratio['wall_s_all']:.1f} (wall), "
              f"{ratio['cpu_s_all']:.1f} (CPU)")
        print(f"agreement of the scale path with the exact path at {args.baseline_n}:",
              json.dumps(agreement(base / "scale", base / "exact")))


if __name__ == "__main__":
    main()
