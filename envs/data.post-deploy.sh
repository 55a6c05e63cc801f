#!/usr/bin/env bash
# Snakemake runs this inside the freshly created conda env (--sdm conda), from the directory it
# was started in. The env file cannot install kxl itself: Snakemake copies it under
# .snakemake/conda/ before `conda env create`, so a relative `-e ../` would point there. The env
# file installs the dependencies within pyproject's ranges; here pip installs the checkout and
# moves them to the exact versions of the last verified run, the lock (README, Environments).
set -euo pipefail
if ! grep -qs '^name = "kxl"$' pyproject.toml; then
    echo "kxl post-deploy: run snakemake from the kxl checkout (no kxl pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install -c envs/locks/main.txt -e .
