"""Stage 'train': LoKr training over the data-order plan (see docs/formats.md section 8)."""
