"""kxl benchmarks: `python -m benchmarks [--quick] [NAME ...]` (see benchmarks/RESULTS.md)."""

import sys
from pathlib import Path

# The random-weight SDXL models and tiny training inputs are test fixtures
# (tests/fixtures_train.py), shared with the benchmarks; appended, so nothing on the path is
# shadowed by a test folder's name.
_TESTS = str(Path(__file__).resolve().parents[1] / "tests")
if _TESTS not in sys.path:
    sys.path.append(_TESTS)
