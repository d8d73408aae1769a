rule preprocess:
    """Every cutout cropped, stretched and resized into one HDF5 store; bad files quarantined."""
    input:
        catalogue=rules.acquire.output.catalogue,
    output:
        store=result("{dataset}", "preprocess/store.h5"),
        quarantine=reported("preprocess/quarantine.csv", "preprocess_quarantine.rst", "1. Preprocessing"),
    params:
        code=package_code("preprocess"),
        settings=settings("preprocess"),
    log:
        f"{RESULTS}/logs/{{dataset}}/preprocess.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/preprocess.tsv"
    threads: lambda w: stage_settings(config, w.dataset, "preprocess").get("workers", 1)
    resources:
        mem_mb=4000,
    conda:
        "../../envs/preprocess.yaml"
    script:
        "../scripts/preprocess.py"
