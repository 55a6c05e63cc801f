# Rules of stage 'train' (see src/kxl/train): LoKr training over the plan (stages 8-9).
# Always launched through torchrun (nproc 1 in the tiny default: same code, W = 1); gloo on CPU,
# nccl on GPU. The rule is re-entrant: `--resume auto` continues from the newest valid checkpoint
# in results/train/checkpoints, which is how the workflow resumes after preemption (the folder
# is not a declared output, so Snakemake leaves it in place when the job fails).
TRAIN_RUN = config["train"]["run"]


rule train:
    input:
        plan="results/plan/plan.parquet",
        buckets="results/buckets/buckets.parquet",
        cache_index="results/buckets/cache/index.json",
        captions="results/captions/captions.parquet",
        base="results/base/base.safetensors",
        config_dir="results/base/config",
        preset=config["train"]["lokr"]["preset"],
    output:
        lokr="results/epsilon-lokr.safetensors",
        metrics="results/train/metrics.csv",
    log:
        "logs/train/train.log",
    benchmark:
        "logs/benchmarks/train.tsv"
    params:
        train=section("train"),
        plan=section("plan"),
        seed=config["seed"],
        nproc=TRAIN_RUN["nproc"],
    threads: TRAIN_RUN["threads"]
    resources:
        gpu=TRAIN_RUN["gpu"],
        mem_mb=TRAIN_RUN["mem_mb"],
        runtime=TRAIN_RUN["runtime"],
    conda:
        "../envs/train.yaml"
    shell:
        "OMP_NUM_THREADS={threads} torchrun --standalone --nproc-per-node {params.nproc} -m kxl train"
        " --plan {input.plan} --buckets {input.buckets} --buckets-cache results/buckets/cache"
        " --captions {input.captions} --base {input.base} --config-dir {input.config_dir}"
        " --config-json {params.train:q} --plan-config-json {params.plan:q} --seed {params.seed}"
        " --out-dir results/train --lokr {output.lokr} --resume auto > {log} 2>&1"
