# Rules of stage 'images' (see src/kxl/images): danbooru2023-style tar shards -> validated image
# files, dataset.parquet and dropped.parquet (docs/formats.md 5). The shards are synthetic in the
# default run and the pinned HF dataset (through the HF cache) in the full run, one folder per
# shard family of images.huggingface.families (the main data-0XXX/1XXX tars and the update ones).
# The two source rules get just their subsection, so a change reruns exactly the rule using it.


if SYNTHETIC:

    rule synth_images:
        input:
            kept="results/manifest/kept.parquet",
            tags="results/metadata/tags.parquet",
        output:
            directory("results/images/shards"),
        log:
            "logs/images/synth_images.log",
        benchmark:
            "logs/benchmarks/synth_images.tsv"
        params:
            cfg=section("images.synthetic"),
        threads: 8
        resources:
            mem_mb=retry_mem(4000),
            runtime=60,
        conda:
            "../envs/data.yaml"
        shell:
            "kxl synth-images --kept {input.kept} --tags {input.tags}"
            " --config-json {params.cfg:q} --out-dir {output} --threads {threads} > {log} 2>&1"

else:

    rule fetch_images:
        input:
            kept="results/manifest/kept.parquet",
        output:
            directory("results/images/shards"),
        log:
            "logs/images/fetch_images.log",
        benchmark:
            "logs/benchmarks/fetch_images.tsv"
        params:
            cfg=section("images.huggingface"),
        threads: 1
        resources:
            mem_mb=retry_mem(2000),
            runtime=2880,
        conda:
            "../envs/data.yaml"
        shell:
            "kxl fetch-images --kept {input.kept} --config-json {params.cfg:q}"
            " --out-dir {output} > {log} 2>&1"


rule extract_images:
    input:
        kept="results/manifest/kept.parquet",
        shards="results/images/shards",
    output:
        files=directory("results/images/files"),
        dataset="results/images/dataset.parquet",
        dropped="results/images/dropped.parquet",
    log:
        "logs/images/extract_images.log",
    benchmark:
        "logs/benchmarks/extract_images.tsv"
    params:
        cfg=section("images"),
    threads: 8
    resources:
        mem_mb=retry_mem(8000),
        runtime=1440,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl extract-images --kept {input.kept} --shards-dir {input.shards}"
        " --config-json {params.cfg:q} --out-dir {output.files} --dataset {output.dataset}"
        " --dropped {output.dropped} --threads {threads} > {log} 2>&1"
