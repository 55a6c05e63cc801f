# Config validation and small path/param helpers only; logic lives in src/kxl.
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from kxl.audit.config import all_pairs, crash_scenario, series_inputs
from kxl.hub import is_local
from kxl.config_check import config_problem

# kxl's check first: one short paragraph naming the files, the key path and what was expected
# (snakemake's validate prints the failing schema, for an unknown top-level key all of it).
_problem = config_problem(config, workflow.source_path("../config/schema.yaml"))
if _problem:
    _rel = (os.path.relpath(os.path.abspath(f)) for f in workflow.configfiles)
    _files = dict.fromkeys(r if not r.startswith("..") else os.path.abspath(r) for r in _rel)
    raise WorkflowError(f"invalid config (from {', '.join(_files)}) at {_problem}")
validate(config, "../config/schema.yaml")

RESULTS = "results"
LOGS = "logs"

# The one switch between the two data sources: synthetic data and a tiny base made here (the
# default run), or the pinned HF files (the full run). metadata, images and base pick their
# source rule by it; eval asks for a GPU only for the real models.
SYNTHETIC = config["metadata"]["source"] == "synthetic"


def retry_mem(mb):
    """A rule's `mem_mb`: `mb` on the first attempt, `attempt` times it on a retry.

    The one place retries scale memory (profiles/slurm sets `retries`): a job killed for memory
    is resubmitted with 2x, then 3x its request. Each rule's `mb` and where it comes from (a
    measured peak scaled to the full run, with headroom) is in docs/cluster-resources.md.
    """
    return lambda wildcards, attempt: mb * attempt


def section(name):
    """A config section ("images" or "images.synthetic") as compact JSON for `params:`.

    Passing sections through params makes a changed value rerun exactly the rules that use it.
    Returned as a function of the wildcards: Snakemake expands `{name}` in params *strings*
    as wildcards, and config values hold such braces (shard file patterns like
    "data-{shard}.tar"); a function's result is passed on untouched.
    """
    value = config
    for key in name.split("."):
        value = value[key]
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return lambda wildcards: text


# Stage buckets: with `buckets.cache: latents` the base model is an input of cache_buckets.
LATENT_CACHE = config["buckets"]["cache"] == "latents"


def cache_base_inputs(wildcards):
    if not LATENT_CACHE:
        return {}
    return {"base": "results/base/base.safetensors", "config_dir": "results/base/config"}


def cache_base_args(wildcards, input):
    return f"--base {input.base} --config-dir {input.config_dir}" if LATENT_CACHE else ""


# Stage train: the torchrun launch line and its process count (see rules/train.smk).
TRAIN_RUN = config["train"]["run"]
TRAIN_LAUNCH = {
    "standalone": "torchrun --standalone --nproc-per-node {params.nproc} -m kxl train",
    # The SLURM plugin runs this shell line in a one-node step of the allocation, whose
    # SLURM_JOB_NODELIST and SLURM_NNODES describe that step: srun would take them for the
    # allocation ("Only allocated 1 nodes asked for 2"), so they go. --overlap: that step holds
    # the first node's CPUs, and a step that may not share them waits forever. Each task reads
    # the first host from the new step's variables; c10d assigns the ranks.
    "multinode": (
        "env -u SLURM_JOB_NODELIST -u SLURM_NNODES srun --nodes {resources.nodes}"
        " --ntasks {resources.nodes} --ntasks-per-node 1 --overlap bash -c"
        " 'exec torchrun --nnodes $SLURM_NNODES"
        " --nproc-per-node {params.nproc} --rdzv-backend c10d --rdzv-endpoint"
        ' $(scontrol show hostnames "$SLURM_STEP_NODELIST" | head -n 1):29500'
        ' --rdzv-id $SLURM_JOB_ID -m kxl train "$@"\' kxl'
    ),
}[TRAIN_RUN["launcher"]]


# Multinode on CPUs: the plugin submits a job without GPUs with `--ntasks={tasks}` (1 unless
# set), and SLURM then shrinks `--nodes` to the one node that task needs; one task per node keeps
# them. A GPU job gets no --ntasks, so sbatch's default of one task per node already holds.
CPU_MULTINODE = TRAIN_RUN["nodes"] > 1 and not TRAIN_RUN["gpu"]
TRAIN_TASKS = {"tasks": TRAIN_RUN["nodes"]} if CPU_MULTINODE else {}


def train_nproc(wildcards, resources):
    """torchrun processes per node: one per GPU of the allocation, else the CPU count."""
    return resources.gpu // TRAIN_RUN["nodes"] if resources.gpu else TRAIN_RUN["nproc"]


# Stage audit: audit.diffs plus one released-step comparison per released file with a `step`.
AUDIT_PAIRS = all_pairs(config["audit"])
RELEASED = config["audit"].get("released") or {}


def audit_diff_inputs(wildcards):
    """The local-file operands of one configured diff (released names are not files)."""
    pair = AUDIT_PAIRS[wildcards.name]
    specs = [pair["a"], pair["b"], pair.get("base")]
    return [s for s in specs if s and is_local(s, RELEASED)]


# Stage audit: one series report per audit.series entry.
AUDIT_SERIES = sorted(config["audit"].get("series") or {})
CHECKPOINT_STEPS = ",".join(str(s) for s in config["train"]["checkpoint_steps"])


def audit_series_inputs(wildcards):
    """The rebuilt run's step files (and listed local paths) that one series reads."""
    return series_inputs(config["audit"], config["train"]["checkpoint_steps"], wildcards.name)


# Stage audit: the crash scenarios of audit.crash (rules/crash.smk), checked against the kept
# checkpoints (kxl.audit.config.crash_scenario); their series are `crash-<name>`.
CRASH = {
    name: crash_scenario(config["audit"]["crash"], name, config["train"]["checkpoint_steps"])
    for name in config["audit"].get("crash") or {}
}


def crash_checkpoint(wildcards):
    """The exact run's checkpoint the scenario continues (a folder training keeps, not a
    declared output: the exact run's LoKr is the input that orders the scenario after it)."""
    return f"results/train/checkpoints/step-{CRASH[wildcards.name].resume_step:08d}"


# Stage eval: a compared model is a local file (an input, built first), a released name or
# hf://owner/repo/file@revision (fetched by the eval rules through the HF cache, not an input).
EVAL_MODELS = {m["name"]: m for m in config["eval"]["generate"]["models"]}


def eval_model_input(wildcards):
    """The model's file when it is a local path; nothing for a released name or hf://."""
    path = EVAL_MODELS[wildcards.model]["path"]
    return [path] if is_local(path, RELEASED) else []


def eval_model_released(wildcards):
    """The model's audit.released entry as JSON (only its own: other pins rerun nothing)."""
    path = EVAL_MODELS[wildcards.model]["path"]
    entry = {path: RELEASED[path]} if path in RELEASED else {}
    return json.dumps(entry, sort_keys=True, separators=(",", ":"))
