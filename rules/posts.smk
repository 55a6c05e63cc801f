# Rules of stage 'posts' (see src/kxl/posts): the selected post list (docs/formats.md 2).


rule select_posts:
    input:
        posts="results/metadata/posts.parquet",
    output:
        selected="results/posts/selected.parquet",
        summary="results/posts/summary.json",
    log:
        "logs/posts/select_posts.log",
    benchmark:
        "logs/benchmarks/select_posts.tsv"
    params:
        cfg=section("posts"),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=retry_mem(2000),  # docs/cluster-resources.md
        runtime=10,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl select-posts --posts {input.posts} --config-json {params.cfg:q} --seed {params.seed}"
        " --out {output.selected} --summary {output.summary} > {log} 2>&1"
