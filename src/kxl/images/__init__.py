"""Stage 'images' (see docs/formats.md)."""
