"""Stage 'captions' (see docs/formats.md)."""
