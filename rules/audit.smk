# Stage 12 'audit' (see src/kxl/audit): diffs named in config audit.diffs ->
# results/audit/diff/<name>.{json,html}; series named in audit.series ->
# results/audit/series/<name>.{json,html}. Operands that are local paths become inputs (so they
# are built first); released names and hf:// specs are fetched by `kxl diff` through the HF cache.
# Rule verify writes `kxl verify`'s result to results/audit/verify.json for the run report.


rule audit_diff:
    input:
        audit_diff_inputs,
    output:
        json="results/audit/diff/{name}.json",
        html=report("results/audit/diff/{name}.html", category="Audit"),
    log:
        "logs/audit/diff_{name}.log",
    benchmark:
        "logs/benchmarks/audit_diff_{name}.tsv"
    params:
        cfg=section("audit"),
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=60,
    conda:
        "../envs/train.yaml"
    shell:
        "kxl diff --pair {wildcards.name} --config-json {params.cfg:q} --exit-zero"
        " --json {output.json} --report {output.html} > {log} 2>&1"


# Per-block norms and changes of the LoKr over checkpoint steps (one series or two side by side).
# A `rebuilt` series reads rule step_lokr's files (inputs); released ones come through the HF
# cache. Streams one module of every file at a time (docs/cluster-resources.md).
rule audit_series:
    input:
        audit_series_inputs,
    output:
        json="results/audit/series/{name}.json",
        html=report("results/audit/series/{name}.html", category="Audit"),
    log:
        "logs/audit/series_{name}.log",
    benchmark:
        "logs/benchmarks/audit_series_{name}.tsv"
    params:
        cfg=section("audit"),
        steps=CHECKPOINT_STEPS,
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=120,
    conda:
        "../envs/train.yaml"
    shell:
        "kxl series --name {wildcards.name} --config-json {params.cfg:q}"
        " --checkpoint-steps {params.steps:q} --json {output.json} --report {output.html}"
        " > {log} 2>&1"


# `kxl verify` over the merged model and everything it was made from (its provenance lineage: a
# set that does not depend on which other jobs ran first); the run report shows it.
# --exit-zero: a finding is the result to show, not a failed job.
rule verify:
    input:
        "results/epsilon.safetensors",
    output:
        report("results/audit/verify.json", category="Audit"),
    log:
        "logs/audit/verify.log",
    benchmark:
        "logs/benchmarks/verify.tsv"
    threads: 1
    resources:
        mem_mb=retry_mem(2000),
        runtime=240,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl verify results --of {input} --json {output} --exit-zero > {log} 2>&1"
