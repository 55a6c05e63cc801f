# Rules of stage 'plan' (see src/kxl/plan): the data-order plan (docs/formats.md 7).


rule make_plan:
    input:
        buckets="results/buckets/buckets.parquet",
    output:
        plan="results/plan/plan.parquet",
        summary="results/plan/summary.json",
    log:
        "logs/plan/make_plan.log",
    benchmark:
        "logs/benchmarks/make_plan.tsv"
    params:
        cfg=section("plan"),
        seed=config["seed"],
    threads: 1
    resources:
        mem_mb=retry_mem(2000),  # docs/cluster-resources.md
        runtime=20,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl make-plan --buckets {input.buckets} --config-json {params.cfg:q}"
        " --seed {params.seed} --out {output.plan} --summary {output.summary} > {log} 2>&1"
