"""Stage 'metadata' (see docs/formats.md)."""
