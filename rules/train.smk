# Rules of stage 'train' (see src/kxl/train): LoKr training over the plan (stages 8-9).
# Always launched through torchrun (nproc 1 in the tiny default: same code, W = 1); gloo on CPU,
# nccl on GPU. The rule is re-entrant: `--resume auto` continues from the newest valid checkpoint
# in results/train/checkpoints, which is how the workflow resumes after preemption (the folder
# is not a declared output, so Snakemake leaves it in place when the job fails).
#
# Images: results/buckets/cache/index.json says which storage the buckets stage used; with
# `buckets.cache: none` (the full run) each rank decodes its step's images from
# results/images/files/... (listed in images/dataset.parquet) with the recorded resize + crop
# (ahead of the step in train.data_workers processes per rank: CPUs of the same allocation);
# with `latents` it samples the cached VAE posterior (made from the same base file).
#
# Resources (issue 7): ONE task per node (no `tasks`): SLURM (executor plugin >= 2.7.1) gives it
# `gpu` GPUs and `cpus_per_gpu` CPUs each, and torchrun spawns the ranks itself:
# `--nproc-per-node` = the allocation's GPUs per node when gpu > 0, else train.run.nproc CPU
# processes. It reads resources.gpu, so a profile's set-resources override is what torchrun uses.
#
# train.run.launcher picks the torchrun form (TRAIN_LAUNCH in common.smk; one shell call):
# - standalone: `torchrun --standalone --nproc-per-node N` (one node, local rendezvous).
# - multinode: the job asks for `nodes` nodes; `srun` starts one torchrun per node (ntasks 1 per
#   node, --overlap with the plugin's own step), which meet through c10d rendezvous on the
#   step's first host, port 29500; c10d numbers the ranks. bash -c makes each node's task read
#   its own step variables; the kxl arguments pass through as "$@" unchanged. Per node: gpu /
#   nodes processes (GPUs assumed split evenly), or train.run.nproc on CPUs (gpu: 0; then the job
#   asks for one task per node, TRAIN_TASKS). Proven on a real two-node SLURM for 2 nodes x 1
#   CPU rank (tests/cluster/test_multinode.py). With GPUs the SLURM plugin (2.8.0) fails first:
#   its own one-task step asks for all `--gpus` of the job on one node. The output folders must
#   be on a shared filesystem (rank 0 writes them).
rule train:
    input:
        plan="results/plan/plan.parquet",
        buckets="results/buckets/buckets.parquet",
        cache_index="results/buckets/cache/index.json",
        dataset="results/images/dataset.parquet",
        captions="results/captions/captions.parquet",
        base="results/base/base.safetensors",
        config_dir="results/base/config",
        preset=config["train"]["lokr"]["preset"],
        init_lokr=config["train"].get("init_lokr") or [],  # train.init_lokr: a LoKr to continue
        counts="results/checks/counts.json",  # the count gate passed (rules/checks.smk)
    output:
        lokr="results/epsilon-lokr.safetensors",
        metrics="results/train/metrics.csv",
    log:
        "logs/train/train.log",
    benchmark:
        "logs/benchmarks/train.tsv"
    params:
        train=section("train"),
        seed=config["seed"],
        nproc=train_nproc,
        out_dir=lambda wildcards, output: os.path.dirname(output.metrics),
        extra="",  # more `kxl train` arguments (rule crash_train: --continue-from, --warmup)
    threads: TRAIN_RUN["threads"]
    resources:
        gpu=TRAIN_RUN["gpu"],
        cpus_per_gpu=TRAIN_RUN["cpus_per_gpu"],
        nodes=TRAIN_RUN["nodes"],
        **TRAIN_TASKS,
        mem_mb=retry_mem(TRAIN_RUN["mem_mb"]),
        runtime=TRAIN_RUN["runtime"],
    conda:
        "../envs/train.yaml"
    shell:
        f"OMP_NUM_THREADS={{threads}} {TRAIN_LAUNCH} --plan {{input.plan}}"
        " --buckets {input.buckets} --cache-index {input.cache_index}"
        " --dataset {input.dataset} --images-root results/images"
        " --captions {input.captions} --base {input.base} --config-dir {input.config_dir}"
        " --config-json {params.train:q} --seed {params.seed}"
        " --out-dir {params.out_dir} --lokr {output.lokr} --resume auto{params.extra} > {log} 2>&1"


# The rebuilt run's LoKr at a checkpoint step (audit.released entries with a `step`: each is
# compared by rule audit_diff as released-step-<step>). After training: the checkpoint folder is
# not a declared output, so the final LoKr is the input that orders this after the run.
rule step_lokr:
    input:
        lokr="results/epsilon-lokr.safetensors",
    output:
        "results/train/steps/step-{step}.safetensors",
    wildcard_constraints:
        step=r"\d{8}",
    log:
        "logs/train/step_lokr_{step}.log",
    benchmark:
        "logs/benchmarks/step_lokr_{step}.tsv"
    params:
        train=section("train"),
        checkpoints="results/train/checkpoints",
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=30,
    conda:
        "../envs/train.yaml"
    shell:
        "kxl step-lokr --checkpoints {params.checkpoints} --step {wildcards.step}"
        " --config-json {params.train:q} --out {output} > {log} 2>&1"
