# Config validation and small path/param helpers only; logic lives in src/kxl.
import json

from snakemake.utils import validate

validate(config, "../config/schema.yaml")

RESULTS = "results"
LOGS = "logs"


def section(name):
    """A config section ("images" or "images.synthetic") as compact JSON for `params:`.

    Passing sections through params makes a changed value rerun exactly the rules that use it.
    """
    value = config
    for key in name.split("."):
        value = value[key]
    return json.dumps(value, sort_keys=True, separators=(",", ":"))

