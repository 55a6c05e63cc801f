"""Stage 'posts' (see docs/formats.md)."""
