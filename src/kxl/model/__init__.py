"""Stage 8's base model: tiny SDXL synthesis, HF fetch, SGM <-> diffusers names, checked loading."""
