# Stage 'report' (see src/kxl/report): results/report/run.html, read from the finished run's
# artifacts (nothing is recomputed; big tables are read as aggregates). Its inputs end at the
# trained LoKr and `kxl verify`'s result, so after `make run` it builds in seconds; the CCIP and
# audit pages are linked when they exist, not required. Checkpoints, TensorBoard files and the
# train log are read but not declared: no rule outputs them (training resumes from them), and
# declaring them would make Snakemake rerun training. While training runs, rule live_report (below)
# or `kxl report --watch` draws the training plots from metrics.running.csv (README, "The run
# report").


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


# The live training view: results/report/live.html (the run report's training section) from
# results/train/metrics.running.csv, which the trainer appends to and no rule declares. Nothing
# of training's is an input, so asking for the page never (re)runs training, and it locks only
# its own output, so it runs beside the Snakemake that is training. Without inputs Snakemake
# never finds the page out of date (it has no always-run rule), so the documented command
# forces it: `--forcerun live_report` redraws the page on every call. A local rule: drawn in
# seconds on the submitting host rather than queued beside training. Its one line (progress,
# or that there are no metrics yet) goes to the terminal as well as to the log.
localrules:
    live_report,


rule live_report:
    output:
        "results/report/live.html",
    log:
        "logs/report/live_report.log",
    benchmark:
        "logs/benchmarks/live_report.tsv"
    threads: 1
    resources:
        mem_mb=retry_mem(1000),
        runtime=5,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl report --watch --once --out {output} 2>&1 | tee {log}"
