rule active_learning:
    """The anomaly ranking re-ranked by a person's labels (NeighbourScore, GP expected
    improvement), and a simulated person's discovery curves where the catalogue has targets."""
    input:
        ranking=rules.anomaly.output.ranking,
        pca_features=rules.features.output.pca_features,
        store=rules.preprocess.output.store,
        labels=labels_csv,
    output:
        ranking=reported("active_learning/ranking.csv", "active_learning_ranking.rst", "6. Active learning"),
        ranking_ecsv=result("{dataset}", "active_learning/ranking.ecsv"),
        gallery=reported("active_learning/next.png", "active_learning_gallery.rst", "6. Active learning"),
        curve=reported("active_learning/discovery_curve.csv", "active_learning_curve_table.rst", "6. Active learning"),
        summary=reported("active_learning/discovery_summary.csv", "active_learning_summary.rst", "6. Active learning"),
        curve_plot=reported("active_learning/discovery_curve.png", "active_learning_curve.rst", "6. Active learning"),
    params:
        code=package_code("active_learning"),
        settings=settings("active_learning"),
        target=lambda w: stage_settings(config, w.dataset, "anomaly").get("target"),
    log:
        f"{RESULTS}/logs/{{dataset}}/active_learning.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/active_learning.tsv"
    threads: 1
    resources:
        mem_mb=4000,
    conda:
        "../../envs/active_learning.yaml"
    script:
        "../scripts/active_learning.py"
