# Rules of stage 'metadata' (see src/kxl/metadata): the HakuBooru-schema SQLite DB and its
# parquet export (docs/formats.md 1). One of synth_metadata / fetch_metadata makes the DB,
# chosen by config metadata.source.

if SYNTHETIC:

    rule synth_metadata:
        output:
            db="results/metadata/danbooru2023.db",
        log:
            "logs/metadata/synth_metadata.log",
        benchmark:
            "logs/benchmarks/synth_metadata.tsv"
        params:
            cfg=section("metadata.synthetic"),
        threads: 1
        resources:
            mem_mb=retry_mem(4000),
            runtime=30,
        conda:
            "../envs/data.yaml"
        shell:
            "kxl synth-metadata --out {output.db} --config-json {params.cfg:q} > {log} 2>&1"

else:

    rule fetch_metadata:
        output:
            db="results/metadata/danbooru2023.db",
        log:
            "logs/metadata/fetch_metadata.log",
        benchmark:
            "logs/benchmarks/fetch_metadata.tsv"
        params:
            cfg=section("metadata.huggingface"),
        threads: 1
        resources:
            mem_mb=retry_mem(2000),
            runtime=240,
        conda:
            "../envs/data.yaml"
        shell:
            "kxl fetch-metadata --out {output.db} --config-json {params.cfg:q} > {log} 2>&1"


rule export_metadata:
    input:
        db="results/metadata/danbooru2023.db",
    output:
        posts="results/metadata/posts.parquet",
        tags="results/metadata/tags.parquet",
        post_tags="results/metadata/post_tags.parquet",
    log:
        "logs/metadata/export_metadata.log",
    benchmark:
        "logs/benchmarks/export_metadata.tsv"
    threads: 2
    resources:
        mem_mb=retry_mem(8000),  # docs/cluster-resources.md
        runtime=30,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl export-metadata --db {input.db} --out-dir results/metadata --threads {threads}"
        " > {log} 2>&1"
