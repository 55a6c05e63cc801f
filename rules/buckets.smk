# Rules of stage 'buckets' (see src/kxl/buckets): bucket set, per-image bucket/resize/crop and
# SDXL crop conditioning, and the bucket cache (docs/formats.md 6).


rule assign_buckets:
    input:
        dataset="results/images/dataset.parquet",
    output:
        bucket_set="results/buckets/bucket_set.parquet",
        buckets="results/buckets/buckets.parquet",
        histogram="results/buckets/histogram.csv",
    log:
        "logs/buckets/assign_buckets.log",
    benchmark:
        "logs/benchmarks/assign_buckets.tsv"
    params:
        cfg=section("buckets"),
    threads: 1
    resources:
        mem_mb=retry_mem(2000),  # docs/cluster-resources.md
        runtime=20,
    conda:
        "../envs/data.yaml"
    shell:
        "kxl assign-buckets --dataset {input.dataset} --config-json {params.cfg:q}"
        " --out {output.buckets} --bucket-set {output.bucket_set}"
        " --histogram {output.histogram} > {log} 2>&1"


# With `buckets.cache: none` only index.json is written (training then decodes the images).
# With `latents` the base model's VAE encodes the cache, so the base is an input (only then:
# the other storages must not wait for, or rerun after, the base stage) and the train env runs
# it (LATENT_CACHE, cache_base_inputs, cache_base_args in common.smk).
rule cache_buckets:
    input:
        unpack(cache_base_inputs),
        dataset="results/images/dataset.parquet",
        buckets="results/buckets/buckets.parquet",
    output:
        index="results/buckets/cache/index.json",
    log:
        "logs/buckets/cache_buckets.log",
    benchmark:
        "logs/benchmarks/cache_buckets.tsv"
    params:
        cfg=section("buckets"),
        base=cache_base_args,
    threads: 1
    resources:
        mem_mb=retry_mem(8000),
        runtime=600,
    conda:
        "../envs/train.yaml" if LATENT_CACHE else "../envs/data.yaml"
    shell:
        "kxl cache-buckets --dataset {input.dataset} --buckets {input.buckets}"
        " --images-root results/images --config-json {params.cfg:q} {params.base}"
        " --threads {threads} --index {output.index} > {log} 2>&1"
