rule anomaly:
    """Isolation forest, LOF and kNN-distance scores on the PCA features, ranked, with the top N shown."""
    input:
        store=rules.preprocess.output.store,
        pca_features=rules.features.output.pca_features,
        neighbours=rules.neighbours.output.neighbours,
    output:
        ranking=reported("anomaly/ranking.csv", "anomaly_ranking.rst", "5. Anomalies"),
        ranking_ecsv=result("{dataset}", "anomaly/ranking.ecsv"),
        gallery=reported("anomaly/top.png", "anomaly_gallery.rst", "5. Anomalies"),
        evaluation=reported("anomaly/target_recovery.csv", "anomaly_recovery.rst", "5. Anomalies"),
    params:
        code=package_code("anomaly"),
        settings=settings("anomaly"),
    log:
        f"{RESULTS}/logs/{{dataset}}/anomaly.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/anomaly.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/anomaly.yaml"
    script:
        "../scripts/anomaly.py"
