"""Stage 'buckets' (see docs/formats.md)."""
