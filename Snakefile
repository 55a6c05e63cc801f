# kxl: the Kohaku XL Epsilon run as a Snakemake workflow.
# Thin wiring only: config + schema validation (rules/common.smk) + one include per stage.
from snakemake.utils import min_version

min_version("9.27")


# A YAML syntax error in the default config, named by file, line and column (snakemake's own
# message names neither); overrides given with --configfile are parsed by snakemake's CLI first.
from kxl.config_check import yaml_problem

if _problem := yaml_problem("config/config.yaml"):  # as configfile: below, from the workdir
    raise WorkflowError(_problem)


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/metadata.smk"
include: "rules/posts.smk"
include: "rules/manifest.smk"
include: "rules/captions.smk"
include: "rules/images.smk"
include: "rules/buckets.smk"
include: "rules/plan.smk"
include: "rules/checks.smk"
include: "rules/base.smk"
include: "rules/train.smk"
include: "rules/merge.smk"
include: "rules/audit.smk"
include: "rules/crash.smk"
include: "rules/eval.smk"
include: "rules/report.smk"


rule all:
    input:
        "results/epsilon.safetensors",
        "results/eval/ccip/report.html",
        expand("results/audit/diff/{name}.html", name=AUDIT_PAIRS),
        expand("results/audit/series/{name}.html", name=AUDIT_SERIES),
        "results/report/run.html",
    default_target: True
