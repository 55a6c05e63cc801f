"""Stage 'plan' (see docs/formats.md)."""
