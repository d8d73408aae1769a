# Seconds of pandas on small tables: not worth a cluster job.
localrules:
    key_figures,


rule key_figures:
    """The run's key figures per dataset, rounded: kNN accuracy against the baselines and the
    targets found, which the report's home page (report/workflow.rst) shows."""
    input:
        knn_accuracy=rules.validate.output.table,
        target_recovery=rules.anomaly.output.evaluation,
        discovery_summary=rules.active_learning.output.summary,
    output:
        accuracy=reported("key_figures/accuracy.csv", "key_figures.rst", "0. Key figures"),
        targets=reported("key_figures/targets_found.csv", "key_figures.rst", "0. Key figures"),
    params:
        code=package_code("key_figures"),
    log:
        f"{RESULTS}/logs/{{dataset}}/key_figures.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/key_figures.tsv"
    threads: 1
    conda:
        "../../envs/key_figures.yaml"
    script:
        "../scripts/key_figures.py"
