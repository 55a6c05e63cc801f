# Stage 12 'audit', crash forensics (src/kxl/audit/crash.py, docs/crash-forensics.md): for each
# audit.crash.<name>, the run as it went had it crashed after checkpoint resume_step and been
# resumed the way sd-scripts 0.8.7 resumed, beside kxl's exact run:
# - crash_plan: the data order of that resume (a plan file: explain-step and the audit read it)
#   and what it did to the data (damage.json);
# - crash_train: the exact run's checkpoint at resume_step continued over that plan with the
#   scenario's warmup (`kxl train --continue-from`, which refuses a checkpoint whose settings,
#   inputs or plan rows before resume_step differ) into results/audit/crash/<name>/;
# - crash_step_lokr: the scenario's LoKr at its checkpoint steps, for the series
#   results/audit/series/crash-<name>.{json,html} (rule audit_series);
# - crash_diff: run vs run, the first divergent step and the posts it trained on in each run.
# Not part of `all`: a scenario trains again from resume_step (at full scale, days).


rule crash_plan:
    input:
        plan="results/plan/plan.parquet",
    output:
        plan="results/audit/crash/{name}/plan.parquet",
        damage="results/audit/crash/{name}/damage.json",
    log:
        "logs/audit/crash_plan_{name}.log",
    benchmark:
        "logs/benchmarks/crash_plan_{name}.tsv"
    params:
        step=lambda wildcards: CRASH[wildcards.name].resume_step,
        reading=lambda wildcards: CRASH[wildcards.name].reading,
        window=lambda wildcards: CRASH[wildcards.name].window,
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=30,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl emulate-resume --plan {input.plan} --resume-step {params.step}"
        " --reading {params.reading} --window {params.window} --out {output.plan}"
        " --damage {output.damage} > {log} 2>&1"


# Rule train (same launch, resources and inputs) over the scenario's plan, into its own folder.
# Re-entrant like train: a rerun resumes the scenario's own newest checkpoint.
use rule train as crash_train with:
    input:
        plan="results/audit/crash/{name}/plan.parquet",
        buckets="results/buckets/buckets.parquet",
        cache_index="results/buckets/cache/index.json",
        dataset="results/images/dataset.parquet",
        captions="results/captions/captions.parquet",
        base="results/base/base.safetensors",
        config_dir="results/base/config",
        preset=config["train"]["lokr"]["preset"],
        exact="results/epsilon-lokr.safetensors",  # the exact run (and its checkpoints) first
    output:
        lokr="results/audit/crash/{name}/lokr.safetensors",
        metrics="results/audit/crash/{name}/metrics.csv",
    log:
        "logs/audit/crash_train_{name}.log",
    benchmark:
        "logs/benchmarks/crash_train_{name}.tsv"
    params:
        train=section("train"),
        seed=config["seed"],
        nproc=train_nproc,
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        extra=lambda wildcards: (f" --continue-from {crash_checkpoint(wildcards)}"
                                 f" --warmup {CRASH[wildcards.name].warmup}"),


use rule step_lokr as crash_step_lokr with:
    input:
        lokr="results/audit/crash/{name}/lokr.safetensors",
    output:
        "results/audit/crash/{name}/steps/step-{step}.safetensors",
    log:
        "logs/audit/crash_step_lokr_{name}_{step}.log",
    benchmark:
        "logs/benchmarks/crash_step_lokr_{name}_{step}.tsv"
    params:
        train=section("train"),
        checkpoints=lambda wildcards: f"results/audit/crash/{wildcards.name}/checkpoints",


# Run vs run over the two checkpoint folders; with both plans and metrics.csv files, the first
# step whose data or learning rate differ and the posts it trained on in each.
rule crash_diff:
    input:
        exact="results/epsilon-lokr.safetensors",
        scenario="results/audit/crash/{name}/lokr.safetensors",
        plan="results/plan/plan.parquet",
        plan_b="results/audit/crash/{name}/plan.parquet",
        metrics="results/train/metrics.csv",
        metrics_b="results/audit/crash/{name}/metrics.csv",
    output:
        json="results/audit/crash/{name}/diff.json",
        html=report("results/audit/crash/{name}/diff.html", category="Audit"),
    log:
        "logs/audit/crash_diff_{name}.log",
    benchmark:
        "logs/benchmarks/crash_diff_{name}.tsv"
    params:
        cfg=section("audit"),
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=60,
    conda:
        "../envs/train.yaml"
    shell:
        "kxl diff results/train results/audit/crash/{wildcards.name} --plan {input.plan}"
        " --plan-b {input.plan_b} --config-json {params.cfg:q} --exit-zero"
        " --json {output.json} --report {output.html} > {log} 2>&1"
