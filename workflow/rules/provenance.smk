rule provenance:
    """What produced these results: resolved config, git commit, package versions, device."""
    input:
        checkpoints=expand(result("{dataset}", "train/model.pt"), dataset=DATASETS),
        # Every stage's output: a stage rerun (new code, new settings) refreshes the page's
        # commit, versions and time.
        stages=stage_outputs(),
    output:
        page=report(
            f"{RESULTS}/provenance.html",
            caption="../report/provenance.rst",
            category="Provenance",
        ),
    params:
        config=config,
    log:
        f"{RESULTS}/logs/provenance.log",
    benchmark:
        f"{RESULTS}/benchmarks/provenance.tsv"
    conda:
        "../../envs/provenance.yaml"
    script:
        "../scripts/provenance.py"
