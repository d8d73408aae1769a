rule validate:
    """kNN accuracy and a linear probe of the BYOL features against baselines on the catalogue labels."""
    input:
        store=rules.preprocess.output.store,
        features=rules.features.output.features,
        imagenet_weights=imagenet_weights("validate"),
    output:
        table=reported("validate/knn_accuracy.csv", "validate_knn_table.rst", "3. Validation"),
        accuracy_plot=reported("validate/knn_accuracy.png", "validate_knn_plot.rst", "3. Validation"),
        confusion_plot=reported("validate/confusion.png", "validate_confusion.rst", "3. Validation"),
    params:
        code=package_code("validate"),
        settings=settings("validate"),
    log:
        f"{RESULTS}/logs/{{dataset}}/validate.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/validate.tsv"
    threads: 2
    resources:
        # the pixel-PCA baseline reads the whole image store
        mem_mb=8000,
    conda:
        "../../envs/validate.yaml"
    script:
        "../scripts/validate.py"
