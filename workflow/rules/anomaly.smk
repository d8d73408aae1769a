rule rank_anomalies:
    """Isolation forest, LOF and kNN-distance scores on the PCA features, ranked, with the top N shown."""
    input:
        store=rules.preprocess.output.store,
        pca_features=rules.extract_features.output.pca_features,
        neighbours=rules.neighbours.output.neighbours,
    output:
        ranking=reported("anomalies/ranking.csv", "anomaly_ranking.rst", "5. Anomalies"),
        ranking_ecsv=result("{dataset}", "anomalies/ranking.ecsv"),
        gallery=reported("anomalies/top.png", "anomaly_gallery.rst", "5. Anomalies"),
        evaluation=reported("anomalies/target_recovery.csv", "anomaly_recovery.rst", "5. Anomalies"),
    params:
        code=package_code("rank_anomalies.py", "anomaly.py"),
        settings=settings("anomaly"),
    log:
        f"{RESULTS}/logs/{{dataset}}/rank_anomalies.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/rank_anomalies.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/rank_anomalies.yaml"
    script:
        "../scripts/rank_anomalies.py"
