"""The workflow through profiles/slurm on a real one-node SLURM cluster (profiles/slurm/testcluster.sh).

Opt-in: BYOL_SLURM_TEST=1 (.ci/run sets it). The test starts the cluster as root, installing
the Debian packages when missing, and tears it down afterwards, failed or not.
"""

from __future__ import annotations

import copy
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.integration.test_workflow import TINY_CONFIG, write_config

REPO = Path(__file__).resolve().parents[2]
TESTCLUSTER = REPO / "profiles" / "slurm" / "testcluster.sh"
PROFILE = REPO / "profiles" / "slurm"
DATASET = "sim_optical"
# Every cluster run is bounded: a plugin that cannot read job states waits for ever.
RUN_LIMIT_S = 600
LOCAL_RULES = {"acquire", "provenance", "key_figures", "default"}  # localrules: in the .smk files

pytestmark = [pytest.mark.slurm, pytest.mark.slow]


def slurm_config() -> dict:
    """The tiny workflow on one dataset, with 4 epochs so that training can be cancelled mid-way."""
    config = copy.deepcopy(TINY_CONFIG)
    config["datasets"] = {DATASET: config["datasets"][DATASET]}
    config["datasets"][DATASET]["source"]["n_objects"] = 160
    config["train"].update(epochs=4, num_threads=1)
    return config


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict[str, str]]:
    """The environment that points SLURM commands at a running test cluster."""
    if os.environ.get("BYOL_SLURM_TEST") != "1":
        pytest.skip("set BYOL_SLURM_TEST=1 to start a throwaway SLURM cluster on this machine "
                    "(root; installs munge, MariaDB and SLURM from apt when missing)")
    if os.geteuid() != 0:
        pytest.skip("the SLURM test cluster needs root (slurmd runs jobs as their users)")
    export = subprocess.run(["bash", str(TESTCLUSTER), "env"], capture_output=True, text=True, check=True).stdout
    env = {**os.environ, **dict([export.removeprefix("export ").strip().split("=", 1)]), "PYTHONHASHSEED": "0"}
    try:
        up = subprocess.run(["bash", str(TESTCLUSTER), "up"], capture_output=True, text=True, timeout=600)
        if up.returncode == 3:
            pytest.skip(f"no SLURM packages and none can be installed: {up.stderr.strip()}")
        assert up.returncode == 0, f"testcluster.sh up failed:\n{up.stderr}"
        yield env
    finally:
        down = subprocess.run(["bash", str(TESTCLUSTER), "down"], capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, f"testcluster.sh down failed:\n{down.stderr}"


def fitted_overrides(rules: list[str]) -> list[str]:
    """Command-line settings that fit the profile onto the test node: partition and account of the
    test cluster, small memory, one CPU per job. A command-line --set-resources replaces the
    profile's whole set-resources, so every other key the profile gives a rule (gpu, runtime) is
    repeated from the profile file."""
    profile = yaml.safe_load((PROFILE / "config.yaml").read_text())
    fitted = {"slurm_partition": "test", "mem_mb": 800}
    resources = []
    for rule in rules:
        entry = {**profile["set-resources"].get(rule, {}), **fitted}
        for key in ("cpus_per_gpu", "cpus_per_task"):
            if key in entry:
                entry[key] = 1
        resources += [f"{rule}:{key}={value}" for key, value in entry.items()]
    defaults = {**profile["default-resources"], **fitted, "slurm_account": "root"}
    return [
        "--profile", str(PROFILE),
        "--default-resources", *(f"{key}={value}" for key, value in defaults.items()),
        "--set-resources", *resources,
        # One thread everywhere, as in the local run it is compared with: same numbers.
        "--set-threads", *(f"{rule}=1" for rule in rules),
        "--slurm-init-seconds-before-status-checks", "2",
    ]


def snakemake_command(workdir: Path, *args: str) -> list[str]:
    return ["timeout", "-k", "10", str(RUN_LIMIT_S), sys.executable, "-m", "snakemake",
            "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir), *args]


def planned_rules(workdir: Path, env: dict[str, str], *args: str) -> list[str]:
    """The rule of each job a dry run plans."""
    dry = subprocess.run(snakemake_command(workdir, "-n", *args), env=env, capture_output=True, text=True)
    assert dry.returncode == 0, dry.stderr[-4000:]
    return re.findall(r"^(?:local)?rule (\w+):", dry.stdout + dry.stderr, re.MULTILINE)


def accounting(env: dict[str, str], since: str) -> pd.DataFrame:
    """sacct's allocations (not steps) since `since`: id, state, the rule (from the comment the
    plugin sets), requested and allocated resources."""
    columns = ["job_id", "state", "comment", "requested", "allocated"]
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-S", since, "-o", "JobID,State,Comment,ReqTRES,AllocTRES"],
                         env=env, capture_output=True, text=True, check=True).stdout
    table = pd.DataFrame([line.split("|") for line in out.splitlines() if line], columns=columns)
    table["rule"] = table["comment"].str.extract(r"^rule_(\w+?)(?:_wildcards_|$)")[0]
    return table


def cancel_training_mid_way(workdir: Path, env: dict[str, str], run: subprocess.Popen) -> str:
    """scancel the training job once its first epoch's resume state is written; its job id."""
    resume_state = workdir / "results" / DATASET / "train" / "model.pt.resume"
    deadline = time.monotonic() + RUN_LIMIT_S
    while not resume_state.exists():
        assert run.poll() is None, "the workflow ended before training wrote a resume state"
        assert time.monotonic() < deadline, "no resume state written"
        time.sleep(0.2)
    queue = subprocess.run(["squeue", "-h", "-t", "R", "-o", "%i %k"], env=env, capture_output=True, text=True,
                           check=True).stdout
    running = [line.split()[0] for line in queue.splitlines() if "rule_train" in line]
    assert running, f"training ended before it could be cancelled (raise train.epochs); queue: {queue!r}"
    subprocess.run(["scancel", running[0]], env=env, check=True)
    return running[0]


def test_the_workflow_runs_as_slurm_jobs_and_survives_a_cancelled_job(tmp_path: Path, cluster: dict[str, str]) -> None:
    started = time.monotonic()
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    for workdir in (on_slurm, local):
        workdir.mkdir()
        write_config(workdir, slurm_config())

    planned = planned_rules(on_slurm, cluster)
    # The README: downloads and provenance run on the submitting node, every other stage on the cluster.
    cluster_jobs = sorted(set(planned) - LOCAL_RULES)
    assert LOCAL_RULES <= set(planned) and len(cluster_jobs) == len(planned) - len(LOCAL_RULES), planned
    overrides = fitted_overrides(cluster_jobs)

    since = datetime.now().strftime("%Y-%m-%dT%H:%M:%S")
    with open(on_slurm / "snakemake.out", "w") as out:
        run = subprocess.Popen(snakemake_command(on_slurm, *overrides), env=cluster, stdout=out,
                               stderr=subprocess.STDOUT)
        # The uninterrupted run to compare with, on this machine, meanwhile.
        reference = subprocess.Popen(
            snakemake_command(local, "--cores", "1", *(f"results/{DATASET}/{path}" for path in COMPARED)),
            env=cluster, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            cancelled = cancel_training_mid_way(on_slurm, cluster, run)
            assert run.wait() == 0, f"the SLURM run failed:\n{(on_slurm / 'snakemake.out').read_text()[-6000:]}"
            reference_out = reference.communicate()[0]
        finally:
            for process in (run, reference):
                if process.poll() is None:
                    process.terminate()
    assert reference.returncode == 0, f"the local run failed:\n{reference_out[-4000:]}"

    jobs = accounting(cluster, since)
    completed = jobs[jobs["state"] == "COMPLETED"]
    assert sorted(completed["rule"]) == sorted(cluster_jobs), f"COMPLETED in sacct:\n{jobs}"
    assert jobs.loc[jobs["state"] != "COMPLETED", ["job_id", "rule"]].values.tolist() == [[cancelled, "train"]]
    assert jobs.loc[jobs["job_id"] == cancelled, "state"].iloc[0].startswith("CANCELLED")

    logs = on_slurm / "results" / "logs" / DATASET
    for job_id, rule in completed[["job_id", "rule"]].values:
        assert f", SLURM job {job_id}\n" in (logs / f"{rule}.log").read_text(), f"{rule}.log does not name job {job_id}"
    for log in (logs / "acquire.log", on_slurm / "results" / "logs" / "provenance.log"):
        assert f"running on: host {platform.node()}, not a SLURM job" in log.read_text(), \
            f"{log.name}: a local rule runs on the submitting host, outside SLURM"

    training = completed[completed["rule"] == "train"].iloc[0]
    assert "gres/gpu=1" in training["requested"], "the profile asks for a GPU"
    assert "gres/gpu=1" in training["allocated"], "and SLURM scheduled training on the GPU resource"
    # The profile's retry resubmitted the cancelled job, which continued from its resume state.
    assert "resuming from" in (logs / "train.log").read_text()
    assert_same_outputs(on_slurm / "results" / DATASET, local / "results" / DATASET)
    print(f"SLURM test: {time.monotonic() - started:.0f} s with the cluster up")


COMPARED = ("train/history.csv", "features/features.h5", "cluster/assignments.csv", "anomaly/ranking.csv",
            "active_learning/ranking.csv")


def assert_same_outputs(results: Path, reference: Path) -> None:
    """Same seed, same device, same threads: the same numbers, a cancel and resume notwithstanding."""
    timing = ["images_per_second", "seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(results / COMPARED[0]).drop(columns=timing),
                                  pd.read_csv(reference / COMPARED[0]).drop(columns=timing))
    with h5py.File(results / COMPARED[1]) as ours, h5py.File(reference / COMPARED[1]) as theirs:
        np.testing.assert_array_equal(ours["features"][:], theirs["features"][:])
    for table in COMPARED[2:]:
        pd.testing.assert_frame_equal(pd.read_csv(results / table), pd.read_csv(reference / table))
