# Rules of stage 'base' (see src/kxl/model): stage 8's base model as an SGM single file plus the
# diffusers configs/tokenizers that diffusers' from_single_file(config=...) needs.
# The default run builds a tiny SDXL; the full run fetches the pinned Kohaku XL Delta file.

if SYNTHETIC:

    rule synth_base:
        input:
            tags="results/metadata/tags.parquet",
        output:
            model="results/base/base.safetensors",
            config_dir=directory("results/base/config"),
        log:
            "logs/base/synth_base.log",
        benchmark:
            "logs/benchmarks/synth_base.tsv"
        params:
            cfg=section("base.synthetic"),
        threads: config["base"]["synthetic"]["threads"]
        resources:
            mem_mb=retry_mem(4000),
            # ~9 min on 2 fast cores, over 15 on CI's slower cores shared with other jobs
            runtime=60,
        conda:
            "../envs/train.yaml"
        shell:
            "kxl synth-base --tags {input.tags} --config-json {params.cfg:q}"
            " --out {output.model} --config-dir {output.config_dir} > {log} 2>&1"

else:

    rule fetch_base:
        output:
            model="results/base/base.safetensors",
            config_dir=directory("results/base/config"),
        log:
            "logs/base/fetch_base.log",
        benchmark:
            "logs/benchmarks/fetch_base.tsv"
        params:
            cfg=section("base.huggingface"),
        threads: 1
        resources:
            mem_mb=retry_mem(2000),
            runtime=180,
        conda:
            "../envs/train.yaml"
        shell:
            "kxl fetch-base --config-json {params.cfg:q}"
            " --out {output.model} --config-dir {output.config_dir} > {log} 2>&1"
