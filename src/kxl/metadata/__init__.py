"""Stage 'metadata' (see docs/formats.md section 1).

- `synth.synthesize(out, SyntheticConfig)` / `synth.make_full_scale_db(out, seed)`: a synthetic
  danbooru2023 DB in the HakuBooru 0.0.2 schema (`schema.py` holds its DDL).
- `fetch.fetch_metadata(HuggingFaceConfig, out)`: the pinned HF file, sha256-checked, linked.
- `export.export_metadata(db, out_dir, threads)`: validated posts/tags/post_tags parquet.
"""
