rule neighbours:
    """The k nearest neighbours of every object in the PCA features (exact below
    neighbours.exact_below objects, an approximate HNSW graph above), reused by LOF and
    by "more like this"."""
    input:
        pca_features=rules.features.output.pca_features,
    output:
        neighbours=result("{dataset}", "neighbours/neighbours.h5"),
    params:
        code=package_code("neighbours"),
        settings=settings("neighbours"),
        lof_neighbors=lambda w: stage_settings(config, w.dataset, "anomaly")["lof_neighbors"],
    log:
        f"{RESULTS}/logs/{{dataset}}/neighbours.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/neighbours.tsv"
    threads: 2
    resources:
        # the table (N x k rows and distances) and the HNSW graph: about 4 GB at 4,000,000 x 32, k = 50
        mem_mb=6000,
    conda:
        "../../envs/neighbours.yaml"
    script:
        "../scripts/neighbours.py"
