# Stage 'report' (see src/kxl/report): results/report/run.html, read from the finished run's
# artifacts (nothing is recomputed; big tables are read as aggregates). Its inputs end at the
# trained LoKr and `kxl verify`'s result, so after `make run` it builds in seconds; the CCIP and
# audit pages are linked when they exist, not required. Checkpoints, TensorBoard files and the
# train log are read but not declared: no rule outputs them (training resumes from them), and
# declaring them would make Snakemake rerun training. While training runs, `kxl report --watch`
# redraws the training plots from metrics.running.csv (README, "The run report").


rule run_report:
    input:
        posts_summary="results/posts/summary.json",
        manifest_summary="results/manifest/summary.json",
        kept="results/manifest/kept.parquet",
        captions="results/captions/captions.parquet",
        dataset="results/images/dataset.parquet",
        images_dropped="results/images/dropped.parquet",
        histogram="results/buckets/histogram.csv",
        buckets="results/buckets/buckets.parquet",
        plan="results/plan/plan.parquet",
        plan_summary="results/plan/summary.json",
        counts="results/checks/counts.json",
        metrics="results/train/metrics.csv",
        verify="results/audit/verify.json",
    output:
        report("results/report/run.html", category="Run report"),
    log:
        "logs/report/run_report.log",
    benchmark:
        "logs/benchmarks/run_report.tsv"
    params:
        counts=section("counts"),
    threads: 1
    resources:
        mem_mb=retry_mem(2000),
        runtime=30,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl report --results results --logs logs --counts-json {params.counts:q}"
        " --out {output} > {log} 2>&1"
