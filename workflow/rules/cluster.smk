rule cluster:
    """HDBSCAN and a Bayesian Gaussian mixture on the PCA features; maps and galleries."""
    input:
        store=rules.preprocess.output.store,
        pca_features=rules.extract_features.output.pca_features,
    output:
        assignments=result("{dataset}", "clusters/assignments.csv"),
        assignments_ecsv=result("{dataset}", "clusters/assignments.ecsv"),
        summary=reported("clusters/summary.csv", "cluster_summary.rst", "4. Clustering"),
        scores=reported("clusters/scores.csv", "cluster_scores.rst", "4. Clustering"),
        map_clusters=reported("clusters/map_clusters.png", "cluster_map.rst", "4. Clustering"),
        map_labels=reported("clusters/map_labels.png", "label_map.rst", "4. Clustering"),
        gallery_hdbscan=reported("clusters/gallery_hdbscan.png", "cluster_gallery_hdbscan.rst", "4. Clustering"),
        gallery_gmm=reported("clusters/gallery_gmm.png", "cluster_gallery_gmm.rst", "4. Clustering"),
        map_gmm_merged=reported("clusters/map_gmm_merged.png", "cluster_map_gmm_merged.rst", "4. Clustering"),
        gallery_gmm_merged=reported(
            "clusters/gallery_gmm_merged.png", "cluster_gallery_gmm_merged.rst", "4. Clustering"
        ),
    params:
        code=package_code("cluster.py", "cluster.py"),
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
