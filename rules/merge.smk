# Stage 10 'merge' (see src/kxl/merge): base single file + final LoKr -> results/epsilon.safetensors,
# streamed tensor by tensor in the base's layout and dtypes.


rule merge:
    input:
        lokr="results/epsilon-lokr.safetensors",
        base="results/base/base.safetensors",
        config_dir="results/base/config",
    output:
        "results/epsilon.safetensors",
    log:
        "logs/merge/merge.log",
    benchmark:
        "logs/benchmarks/merge.tsv"
    params:
        cfg=section("merge"),
    threads: 1
    resources:
        mem_mb=retry_mem(2000),  # docs/cluster-resources.md
        runtime=60,
    conda:
        "../envs/train.yaml"
    shell:
        "kxl merge --base {input.base} --lokr {input.lokr} --config-dir {input.config_dir}"
        " --config-json {params.cfg:q} --out {output} > {log} 2>&1"
