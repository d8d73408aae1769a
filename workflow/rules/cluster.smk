rule cluster:
    """HDBSCAN and a Bayesian Gaussian mixture on the PCA features; maps and galleries."""
    input:
        store=rules.preprocess.output.store,
        pca_features=rules.features.output.pca_features,
    output:
        assignments=result("{dataset}", "cluster/assignments.csv"),
        assignments_ecsv=result("{dataset}", "cluster/assignments.ecsv"),
        summary=reported("cluster/summary.csv", "cluster_summary.rst", "4. Clustering"),
        scores=reported("cluster/scores.csv", "cluster_scores.rst", "4. Clustering"),
        map_clusters=reported("cluster/map_clusters.png", "cluster_map.rst", "4. Clustering"),
        map_labels=reported("cluster/map_labels.png", "cluster_label_map.rst", "4. Clustering"),
        gallery_hdbscan=reported("cluster/gallery_hdbscan.png", "cluster_gallery_hdbscan.rst", "4. Clustering"),
        gallery_gmm=reported("cluster/gallery_gmm.png", "cluster_gallery_gmm.rst", "4. Clustering"),
        map_gmm_merged=reported("cluster/map_gmm_merged.png", "cluster_map_gmm_merged.rst", "4. Clustering"),
        gallery_gmm_merged=reported(
            "cluster/gallery_gmm_merged.png", "cluster_gallery_gmm_merged.rst", "4. Clustering"
        ),
    params:
        code=package_code("cluster"),
        settings=settings("cluster"),
    log:
        f"{RESULTS}/logs/{{dataset}}/cluster.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/cluster.tsv"
    threads: 1
    resources:
        # features and refits: under 1 GB for 300,000 objects (benchmarks/bench_discovery.py)
        mem_mb=4000,
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/cluster.py"
