"""Stage 'images': danbooru2023-style tar shards -> validated image files (docs/formats.md 5).

- `synth`: deterministic synthetic shards for the default run (`kxl synth-images`);
- `render`: the per-character visual identity those shards draw;
- `families`: which shard files may hold an id (config `images.huggingface.families`);
- `fetch`: the pinned HF dataset shards, through the HF cache (`kxl fetch-images`);
- `extract`: safe tar reading, validation and the dataset/dropped tables (`kxl extract-images`).
"""
