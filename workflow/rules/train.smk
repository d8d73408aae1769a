rule train:
    """BYOL on the stored images (GPU when present): the backbone checkpoint and loss history."""
    input:
        store=rules.preprocess.output.store,
        imagenet_weights=imagenet_weights("train"),
    output:
        checkpoint=result("{dataset}", "train/model.pt"),
        history=result("{dataset}", "train/history.csv"),
        loss_plot=reported("train/loss.png", "train_loss.rst", "2. BYOL training"),
    params:
        code=package_code("train"),
        settings=settings("train"),
    log:
        f"{RESULTS}/logs/{{dataset}}/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/train.tsv"
    threads: lambda w: stage_settings(config, w.dataset, "train").get("num_threads") or 2
    resources:
        # More than one (e.g. --set-resources train:gpu=4) trains data-parallel.
        gpu=1,
        mem_mb=16000,
        runtime=720,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train.py"
