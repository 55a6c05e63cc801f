"""Stage 'captions' (docs/formats.md section 4).

- `kohaku`: HakuBooru 0.0.2 Kohaku captions for every kept post, vectorised (rules in its doc).
- `dates`: created_at -> year exactly as dateutil gives it, vectorised for ISO-8601.
- `assemble`: flat token arrays -> joined strings (numpy + Arrow).
- `augment`: sd-scripts v0.8.7 per-step shuffle + tag dropout, one RNG per sample.
"""
