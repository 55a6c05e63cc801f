# Rules of stage 'eval' (see src/kxl/eval): CCIP over the character set for every model in
# eval.generate.models, and the report (docs/formats.md section 11). A model's path is a local
# file (an input), a released name (audit.released) or hf://owner/repo/file@revision: those two
# are fetched by the rule through the HF cache (HF_HUB_CACHE; offline with HF_HUB_OFFLINE=1).
# imgutils 0.19 pins numpy<2 and the SLURM executor plugin needs numpy>=2.4.5, so these rules run
# in their own env: .venv-eval (built by `make`), or envs/eval.yaml under --sdm conda.
import os

EVAL = config["eval"]
EVAL_KXL = ".venv-eval/bin/kxl" if os.path.exists(".venv-eval/bin/kxl") else "kxl"
CCIP = "results/eval/ccip"
# the generation settings without the model list: adding a model reruns nothing else
# and with the captions' tag_word_sep (its owner): prompts spell tags as training captions did
GEN_SETTINGS = json.dumps(
    {**{k: v for k, v in EVAL["generate"].items() if k != "models"},
     "tag_word_sep": config["captions"]["tag_word_sep"]},
    sort_keys=True, separators=(",", ":"))


rule ccip_characters:
    input:
        kept="results/manifest/kept.parquet",
        tags="results/metadata/tags.parquet",
        dataset="results/images/dataset.parquet",
    output:
        characters=f"{CCIP}/characters.parquet",
        refs=f"{CCIP}/refs.parquet",
        summary=f"{CCIP}/characters.json",
    log:
        "logs/eval/ccip_characters.log",
    benchmark:
        "logs/benchmarks/ccip_characters.tsv"
    params:
        kxl=EVAL_KXL,
        cfg=section("eval.characters"),
    threads: 1
    resources:
        mem_mb=retry_mem(8000),
        runtime=30,
    conda:
        "../envs/eval.yaml"
    shell:
        "{params.kxl} ccip-characters --kept {input.kept} --tags {input.tags}"
        " --dataset {input.dataset} --config-json {params.cfg:q} --out {output.characters}"
        " --refs {output.refs} --summary {output.summary} > {log} 2>&1"


rule ccip_generate:
    input:
        characters=f"{CCIP}/characters.parquet",
        model=eval_model_input,
        config_dir=lambda w: EVAL_MODELS[w.model].get("config_dir", "results/base/config"),
    output:
        directory(f"{CCIP}/generated/{{model}}"),
    log:
        "logs/eval/ccip_generate_{model}.log",
    benchmark:
        "logs/benchmarks/ccip_generate_{model}.tsv"
    params:
        kxl=EVAL_KXL,
        model=lambda w: EVAL_MODELS[w.model]["path"],
        released=eval_model_released,
        cfg=GEN_SETTINGS,
        seed=config["seed"],
    wildcard_constraints:
        model="[A-Za-z0-9_.-]+",
    threads: 2
    resources:
        mem_mb=retry_mem(32000),  # docs/cluster-resources.md
        runtime=1440,
        gpu=0 if SYNTHETIC else 1,
        cpus_per_gpu=4,
    conda:
        "../envs/eval.yaml"
    shell:
        "{params.kxl} ccip-generate --characters {input.characters} --name {wildcards.model}"
        " --model {params.model:q} --released-json {params.released:q}"
        " --config-dir {input.config_dir} --config-json {params.cfg:q}"
        " --seed {params.seed} --threads {threads} --out-dir {output} > {log} 2>&1"


rule ccip_conditioning:
    input:
        characters=f"{CCIP}/characters.parquet",
        refs=f"{CCIP}/refs.parquet",
        images="results/images/files",
        model=eval_model_input,
        config_dir=lambda w: EVAL_MODELS[w.model].get("config_dir", "results/base/config"),
    output:
        f"{CCIP}/conditioning/{{model}}.json",
    log:
        "logs/eval/ccip_conditioning_{model}.log",
    benchmark:
        "logs/benchmarks/ccip_conditioning_{model}.tsv"
    params:
        kxl=EVAL_KXL,
        model=lambda w: EVAL_MODELS[w.model]["path"],
        released=eval_model_released,
        gen=GEN_SETTINGS,
        cfg=json.dumps(EVAL["conditioning"], sort_keys=True, separators=(",", ":")),
        seed=config["seed"],
    wildcard_constraints:
        model="[A-Za-z0-9_.-]+",
    threads: 2
    resources:
        mem_mb=retry_mem(32000),  # docs/cluster-resources.md
        runtime=720,
        gpu=0 if SYNTHETIC else 1,
        cpus_per_gpu=4,
    conda:
        "../envs/eval.yaml"
    shell:
        "{params.kxl} ccip-conditioning --characters {input.characters} --refs {input.refs}"
        " --images-root results/images --name {wildcards.model} --model {params.model:q}"
        " --released-json {params.released:q} --config-dir {input.config_dir}"
        " --generate-json {params.gen:q}"
        " --config-json {params.cfg:q} --seed {params.seed} --threads {threads}"
        " --out {output} > {log} 2>&1"


rule ccip_model_files:
    output:
        directory("results/eval/hf-cache"),
    log:
        "logs/eval/ccip_model_files.log",
    benchmark:
        "logs/benchmarks/ccip_model_files.tsv"
    params:
        kxl=EVAL_KXL,
        cfg=section("eval.ccip"),
        cmd="ccip-standin" if EVAL["ccip"]["source"] == "standin" else "ccip-fetch",
    threads: 1
    resources:
        mem_mb=retry_mem(2000),
        runtime=30,
    conda:
        "../envs/eval.yaml"
    shell:
        "{params.kxl} {params.cmd} --config-json {params.cfg:q} --out-dir {output} > {log} 2>&1"


rule ccip_score:
    input:
        characters=f"{CCIP}/characters.parquet",
        refs=f"{CCIP}/refs.parquet",
        images="results/images/files",
        hf_cache="results/eval/hf-cache",
        generated=expand(f"{CCIP}/generated/{{model}}", model=list(EVAL_MODELS)),
    output:
        images=f"{CCIP}/image_scores.parquet",
        scores=f"{CCIP}/scores.parquet",
        csv=f"{CCIP}/scores.csv",
        summary=f"{CCIP}/summary.json",
    log:
        "logs/eval/ccip_score.log",
    benchmark:
        "logs/benchmarks/ccip_score.tsv"
    params:
        kxl=EVAL_KXL,
        cfg=section("eval.ccip"),
    threads: 2
    resources:
        mem_mb=retry_mem(16000),
        runtime=1440,
    conda:
        "../envs/eval.yaml"
    shell:
        "{params.kxl} ccip-score --characters {input.characters} --refs {input.refs}"
        " --images-root results/images --hf-cache {input.hf_cache} --config-json {params.cfg:q}"
        " --generated {input.generated} --out-images {output.images} --out {output.scores}"
        " --csv {output.csv} --summary {output.summary} > {log} 2>&1"


rule ccip_report:
    input:
        scores=f"{CCIP}/scores.parquet",
        characters=f"{CCIP}/characters.parquet",
        refs=f"{CCIP}/refs.parquet",
        summary=f"{CCIP}/summary.json",
        images="results/images/files",
        generated=expand(f"{CCIP}/generated/{{model}}", model=list(EVAL_MODELS)),
        conditioning=expand(f"{CCIP}/conditioning/{{model}}.json", model=list(EVAL_MODELS)),
    output:
        report(f"{CCIP}/report.html", category="CCIP evaluation"),
    log:
        "logs/eval/ccip_report.log",
    benchmark:
        "logs/benchmarks/ccip_report.tsv"
    params:
        kxl=EVAL_KXL,
        examples=EVAL["report_examples"],
    threads: 1
    resources:
        mem_mb=retry_mem(4000),
        runtime=30,
    conda:
        "../envs/eval.yaml"
    shell:
        "{params.kxl} ccip-report --scores {input.scores} --characters {input.characters}"
        " --refs {input.refs} --images-root results/images --summary {input.summary}"
        " --generated {input.generated} --conditioning {input.conditioning}"
        " --examples {params.examples} --out {output} > {log} 2>&1"
