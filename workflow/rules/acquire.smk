rule acquire:
    """Cutout files and a catalogue CSV for one dataset (copied, generated or downloaded)."""
    output:
        catalogue=f"{DATA}/{{dataset}}/catalogue.csv",
    params:
        source=lambda w: config["datasets"][w.dataset]["source"],
        seed=config["seed"],
        out_dir=lambda w: f"{DATA}/{w.dataset}",
    log:
        f"{RESULTS}/logs/{{dataset}}/acquire.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/acquire.tsv"
    resources:
        network=1,
    conda:
        "../../envs/acquire.yaml"
    script:
        "../scripts/acquire.py"
