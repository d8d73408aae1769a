import re
import sys
from pathlib import Path

# The stage logic is the byol_discovery package beside this file; the workflow reads its
# config helpers directly, scripts import it from the same place (see scripts/*.py).
WORKFLOW_DIR = Path(workflow.current_basedir).parent
sys.path.insert(0, str(WORKFLOW_DIR))
import yaml  # noqa: E402
from byol_discovery.config import check_dataset_settings, stage_settings  # noqa: E402
from byol_discovery.code_tracking import code_digest  # noqa: E402
from byol_discovery.stages.acquire import (  # noqa: E402
    check_sources,
    speed_settings_json,
    without_speed_settings,
)

RESULTS = config["results_dir"]
DATA = config["data_dir"]
# Where a person puts <dataset>/labels.csv for active learning (default: beside the data).
LABELS = config.get("labels_dir") or DATA
DATASETS = list(config["datasets"])
PACKAGE = WORKFLOW_DIR / "byol_discovery"

# The Snakefile's validate() checks the global sections; per-dataset overrides are checked
# here, merged over them, against the same schema, and each source by its own parser.
check_dataset_settings(config, yaml.safe_load((WORKFLOW_DIR / "schemas" / "config.schema.yaml").read_text()))
check_sources(config)


wildcard_constraints:
    dataset="|".join(re.escape(name) for name in DATASETS),


localrules:
    all,
    acquire,
    provenance,


def settings(stage):
    """Params function: the merged settings of `stage` for the rule's dataset, with the
    global seed and device, so that changing any of them reruns exactly this stage."""

    def resolve(wildcards):
        merged = stage_settings(config, wildcards.dataset, stage)
        if stage == "preprocess":
            merged.pop("workers", None)  # the job's threads: how fast, not what it makes
        if stage == "train":
            merged.pop("num_threads", None)  # the job's threads too (set-threads on a cluster)
        if stage != "preprocess":
            merged["seed"] = config["seed"]
        if stage in ("train", "features", "validate"):
            merged["device"] = config["device"]
        return merged

    return resolve


def dataset_source(wildcards):
    """Params function: the dataset's source without its download speed settings. Those
    change how fast and how persistently files are fetched, not what arrives, so they reach
    the jobs as a resource (`download_settings`), and tuning them reruns nothing."""
    return without_speed_settings(config["datasets"][wildcards.dataset]["source"])


def download_settings(wildcards):
    """Resource function: the dataset's download speed settings, as JSON text."""
    return speed_settings_json(config["datasets"][wildcards.dataset]["source"])


def local_source_files(wildcards):
    """The local files a dataset's source names (`catalogue`, `path`), as inputs: editing
    the catalogue or replacing the archive reruns acquisition. Folders are left out."""
    source = config["datasets"][wildcards.dataset]["source"]
    return [source[key] for key in ("catalogue", "path") if source.get(key) and Path(source[key]).is_file()]


def package_code(stage):
    """Params value: a digest of the package modules that the stage's script and stage module
    (both named after the stage) run, found from their imports, so that editing one reruns
    exactly the stages that run it (Snakemake tracks a rule's script, not what it imports). A digest, not the
    files as inputs: their paths would change, and rerun every stage, whenever the project
    is moved or cloned again."""
    return code_digest(WORKFLOW_DIR / "scripts" / f"{stage}.py", PACKAGE / "stages" / f"{stage}.py")


def result(dataset, path):
    return f"{RESULTS}/{dataset}/{path}"


def reported(path, caption, section):
    """A per-dataset output shown in the report, under the dataset and the stage's section."""
    return report(
        result("{dataset}", path),
        caption=f"../report/{caption}",
        category="{dataset}",
        subcategory=section,
    )


def imagenet_weights(stage):
    """The stage's local ImageNet weights file (train: BYOL's starting point; validate: the
    imagenet_init baseline), when one is configured, as an input: replacing the file reruns
    the stage, and a cluster job has it staged."""

    def weights(wildcards):
        path = stage_settings(config, wildcards.dataset, stage).get("imagenet_weights")
        return [path] if path else []

    return weights


def labels_csv(wildcards):
    """The person's labels for this dataset, when the file exists: [] otherwise, so the rule
    runs before anyone has labelled anything. Creating (or deleting) the file changes the
    rule's input set, and editing it makes it newer than the outputs: either reruns only
    this rule, never the stages upstream."""
    path = Path(LABELS) / wildcards.dataset / "labels.csv"
    return [str(path)] if path.is_file() else []


def stage_outputs():
    """One output of every stage of every dataset."""
    per_dataset = [
        "preprocess/store.h5",
        "train/history.csv",
        "features/features_pca.h5",
        "validate/knn_accuracy.csv",
        "cluster/assignments.csv",
        "anomaly/ranking.csv",
        "active_learning/ranking.csv",
    ]
    return [result(d, p) for d in DATASETS for p in per_dataset]


def all_outputs():
    key_figures = [result(d, f"key_figures/{name}.csv") for d in DATASETS for name in ("accuracy", "targets_found")]
    return stage_outputs() + key_figures + [f"{RESULTS}/provenance.html"]
