"""Stage 'manifest' (see docs/formats.md)."""
