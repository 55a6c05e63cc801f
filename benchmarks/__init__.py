"""kxl benchmarks: `python -m benchmarks [--quick] [NAME ...]` (see benchmarks/RESULTS.md)."""
