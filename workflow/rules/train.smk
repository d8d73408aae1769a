rule train_byol:
    """BYOL on the stored images (GPU when present): the backbone checkpoint and loss history."""
    input:
        store=rules.preprocess.output.store,
        imagenet_weights=imagenet_weights("train"),
    output:
        checkpoint=result("{dataset}", "byol/model.pt"),
        history=result("{dataset}", "byol/history.csv"),
        loss_plot=reported("byol/loss.png", "loss.rst", "2. BYOL training"),
    params:
        code=package_code("train_byol.py", "train.py"),
        settings=settings("train"),
    log:
        f"{RESULTS}/logs/{{dataset}}/train_byol.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/train_byol.tsv"
    threads: lambda w: stage_settings(config, w.dataset, "train").get("num_threads") or 2
    resources:
        # More than one (e.g. --set-resources train_byol:gpu=4) trains data-parallel.
        gpu=1,
        mem_mb=16000,
        runtime=720,
    conda:
        "../../envs/train_byol.yaml"
    script:
        "../scripts/train_byol.py"
