#!/usr/bin/env bash
# Snakemake runs this inside the freshly created conda env (--sdm conda), from the directory it
# was started in. The env file cannot install kxl itself: Snakemake copies it under
# .snakemake/conda/ before `conda env create`, so a relative `-e ../` would point there. Its
# dependencies come from the env file; only the checkout's own package is installed here.
set -euo pipefail
if ! grep -qs '^name = "kxl"$' pyproject.toml; then
    echo "kxl post-deploy: run snakemake from the kxl checkout (no kxl pyproject.toml in $PWD)" >&2
    exit 1
fi
python -m pip install --no-deps -e .
