# Stage 12 'audit' (see src/kxl/audit): diffs named in config audit.diffs ->
# results/audit/diff/<name>.{json,html}. Operands that are local paths become inputs (so they
# are built first); released names and hf:// specs are fetched by `kxl diff` through the HF cache.


rule audit_diff:
    input:
        audit_diff_inputs,
    output:
        json="results/audit/diff/{name}.json",
        html="results/audit/diff/{name}.html",
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
