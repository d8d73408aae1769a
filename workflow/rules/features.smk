rule features:
    """Backbone features (N x 512) of every stored image, and their PCA (95 % of variance)."""
    input:
        store=rules.preprocess.output.store,
        checkpoint=rules.train.output.checkpoint,
    output:
        features=result("{dataset}", "features/features.h5"),
        pca_features=result("{dataset}", "features/features_pca.h5"),
    params:
        code=package_code("features"),
        settings=settings("features"),
    log:
        f"{RESULTS}/logs/{{dataset}}/features.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/features.tsv"
    threads: 2
    resources:
        mem_mb=8000,
    conda:
        "../../envs/features.yaml"
    script:
        "../scripts/features.py"
