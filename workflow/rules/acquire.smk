# Acquisition. Sources that download one cutout per object (legacy_survey; gz_decals with
# images from the cutout service) run as acquire_select -> acquire_download (one job per
# shard: source.shards of them, run in parallel) -> acquire (gather). Other sources
# (embedded, simulated, local folders, MiraBest, the GZ DECaLS PNG zips) run in acquire alone.

from byol_discovery.stages.acquire import selection_settings, shard_paths


localrules:
    acquire_select,
    acquire_download,


rule acquire_select:
    """The objects to download (catalogue fetched, cut, sampled, labelled) and their cutout URLs."""
    input:
        local=local_source_files,
    output:
        selection=f"{DATA}/{{dataset}}/selection.csv",
    params:
        source=lambda w: selection_settings(config["datasets"][w.dataset]["source"]),
        seed=config["seed"],
        out_dir=lambda w: f"{DATA}/{w.dataset}",
    log:
        f"{RESULTS}/logs/{{dataset}}/acquire_select.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/acquire_select.tsv"
    resources:
        network=1,
        download_settings=download_settings,
    conda:
        "../../envs/acquire.yaml"
    script:
        "../scripts/acquire_select.py"


rule acquire_download:
    """One shard of the cutout download: every N-th selected object, validated, with a ledger."""
    input:
        selection=rules.acquire_select.output.selection,
    output:
        ledger=f"{DATA}/{{dataset}}/shards/ledger-{{shard}}.csv",
    params:
        source=dataset_source,
        seed=config["seed"],
        shard=lambda w: int(w.shard),
        out_dir=lambda w: f"{DATA}/{w.dataset}",
    log:
        f"{RESULTS}/logs/{{dataset}}/acquire_download-{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/acquire_download-{{shard}}.tsv"
    wildcard_constraints:
        shard=r"\d+",
    resources:
        network=1,
        download_settings=download_settings,
    conda:
        "../../envs/acquire.yaml"
    script:
        "../scripts/acquire_download.py"


rule acquire:
    """Cutout files and a catalogue CSV for one dataset (copied, generated, or gathered from shards)."""
    input:
        selection=lambda w: shard_paths(config["datasets"][w.dataset]["source"], f"{DATA}/{w.dataset}")[0],
        shards=lambda w: shard_paths(config["datasets"][w.dataset]["source"], f"{DATA}/{w.dataset}")[1],
        local=local_source_files,
    output:
        catalogue=f"{DATA}/{{dataset}}/catalogue.csv",
    params:
        source=dataset_source,
        seed=config["seed"],
        out_dir=lambda w: f"{DATA}/{w.dataset}",
    log:
        f"{RESULTS}/logs/{{dataset}}/acquire.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/acquire.tsv"
    resources:
        network=1,
        download_settings=download_settings,
    conda:
        "../../envs/acquire.yaml"
    script:
        "../scripts/acquire.py"
