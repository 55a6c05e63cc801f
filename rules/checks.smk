# Rules of stage 'checks' (see src/kxl/checks): count gates between the data/plan stages and
# training. checks/counts.json is written only when the counts match config `counts`, and the
# train rule needs it, so a run whose real data differs from the published run's stops here.


rule check_counts:
    input:
        posts_summary="results/posts/summary.json",
        dataset="results/images/dataset.parquet",
        buckets="results/buckets/buckets.parquet",
        plan_summary="results/plan/summary.json",
    output:
        counts="results/checks/counts.json",
    log:
        "logs/checks/check_counts.log",
    benchmark:
        "logs/benchmarks/check_counts.tsv"
    params:
        cfg=section("counts"),
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=10,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl check-counts --posts-summary {input.posts_summary} --dataset {input.dataset}"
        " --buckets {input.buckets} --plan-summary {input.plan_summary}"
        " --config-json {params.cfg:q} --out {output.counts} > {log} 2>&1"
