# Config validation and small path/param helpers only; logic lives in src/kxl.
import json

from snakemake.utils import validate

validate(config, "../config/schema.yaml")

RESULTS = "results"
LOGS = "logs"


def section(name):
    """A config section as compact JSON for `params:` (so a change reruns exactly its users)."""
    return json.dumps(config[name], sort_keys=True, separators=(",", ":"))

