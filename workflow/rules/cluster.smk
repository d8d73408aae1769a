def cluster_report(name, caption):
    return report(
        result("{dataset}", f"clusters/{name}"),
        caption=f"../report/{caption}",
        category="{dataset}",
        subcategory="4. Clustering",
    )


rule cluster:
    """HDBSCAN and a Bayesian Gaussian mixture on the PCA features; maps and galleries."""
    input:
        store=rules.preprocess.output.store,
        pca_features=rules.extract_features.output.pca_features,
        code=package_code("clustering.py"),
    output:
        assignments=result("{dataset}", "clusters/assignments.csv"),
        summary=cluster_report("summary.csv", "cluster_summary.rst"),
        scores=cluster_report("scores.csv", "cluster_scores.rst"),
        map_clusters=cluster_report("map_clusters.png", "cluster_map.rst"),
        map_labels=cluster_report("map_labels.png", "label_map.rst"),
        gallery_hdbscan=cluster_report("gallery_hdbscan.png", "cluster_gallery.rst"),
        gallery_gmm=cluster_report("gallery_gmm.png", "cluster_gallery.rst"),
    params:
        settings=settings("cluster"),
    log:
        f"{RESULTS}/logs/{{dataset}}/cluster.log",
    benchmark:
        f"{RESULTS}/benchmarks/{{dataset}}/cluster.tsv"
    threads: 1
    conda:
        "../../envs/cluster.yaml"
    script:
        "../scripts/cluster.py"
