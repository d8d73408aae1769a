rule rank_anomalies:
    """Isolation forest and LOF scores on the PCA features, ranked, with the top N shown."""
    input:
        store=rules.preprocess.output.store,
        pca_features=rules.extract_features.output.pca_features,
        code=package_code("anomaly.py"),
    output:
        ranking=report(
            result("{dataset}", "anomalies/ranking.csv"),
            caption="../report/anomaly_ranking.rst",
            category="{dataset}",
            subcategory="5. Anomalies",
        ),
        gallery=report(
            result("{dataset}", "anomalies/top.png"),
            caption="../report/anomaly_gallery.rst",
            category="{dataset}",
            subcategory="5. Anomalies",
        ),
        evaluation=report(
            result("{dataset}", "anomalies/target_recovery.csv"),
            caption="../report/anomaly_recovery.rst",
            category="{dataset}",
            subcategory="5. Anomalies",
        ),
    params:
        settings=settings("anomaly"),
    log:
        f"{RESULTS}/logs/{{dataset}}/rank_anomalies.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/rank_anomalies.tsv"
    threads: 1
    conda:
        "../../envs/rank_anomalies.yaml"
    script:
        "../scripts/rank_anomalies.py"
