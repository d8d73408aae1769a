rule validate:
    """kNN accuracy of the BYOL features against cost-free baselines on the catalogue labels."""
    input:
        store=rules.preprocess.output.store,
        features=rules.extract_features.output.features,
        code=package_code("evaluation.py"),
    output:
        table=report(
            result("{dataset}", "validation/knn_accuracy.csv"),
            caption="../report/knn_table.rst",
            category="{dataset}",
            subcategory="3. Validation",
        ),
        accuracy_plot=report(
            result("{dataset}", "validation/knn_accuracy.png"),
            caption="../report/knn_plot.rst",
            category="{dataset}",
            subcategory="3. Validation",
        ),
        confusion_plot=report(
            result("{dataset}", "validation/confusion.png"),
            caption="../report/confusion.rst",
            category="{dataset}",
            subcategory="3. Validation",
        ),
    params:
        settings=settings("validate"),
    log:
        f"{RESULTS}/logs/{{dataset}}/validate.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/validate.tsv"
    threads: 2
    conda:
        "../../envs/validate.yaml"
    script:
        "../scripts/validate.py"
