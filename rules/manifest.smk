# Rules of stage 'manifest' (see src/kxl/manifest): kept/dropped manifest (docs/formats.md 3).


rule build_manifest:
    input:
        selected="results/posts/selected.parquet",
        posts="results/metadata/posts.parquet",
        tags="results/metadata/tags.parquet",
        post_tags="results/metadata/post_tags.parquet",
    output:
        kept="results/manifest/kept.parquet",
        dropped="results/manifest/dropped.parquet",
        summary="results/manifest/summary.json",
    log:
        "logs/manifest/build_manifest.log",
    benchmark:
        "logs/benchmarks/build_manifest.tsv"
    params:
        cfg=section("manifest"),
    threads: 2
    resources:
        mem_mb=retry_mem(13000),  # docs/cluster-resources.md
        runtime=20,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl build-manifest --selected {input.selected} --posts {input.posts}"
        " --tags {input.tags} --post-tags {input.post_tags} --config-json {params.cfg:q}"
        " --out-kept {output.kept} --out-dropped {output.dropped} --summary {output.summary}"
        " > {log} 2>&1"
