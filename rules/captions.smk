# Rules of stage 'captions' (see src/kxl/captions): HakuBooru Kohaku captions (docs/formats.md 4).


rule make_captions:
    input:
        kept="results/manifest/kept.parquet",
        tags="results/metadata/tags.parquet",
    output:
        "results/captions/captions.parquet",
    log:
        "logs/captions/make_captions.log",
    benchmark:
        "logs/benchmarks/make_captions.tsv"
    params:
        cfg=section("captions"),
    threads: 2
    resources:
        mem_mb=retry_mem(7000),  # docs/cluster-resources.md
        runtime=30,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl make-captions --kept {input.kept} --tags {input.tags} --config-json {params.cfg:q}"
        " --out {output} > {log} 2>&1"
