"""Stage 10 'merge': base SDXL single file + LoKr delta -> one single file, streamed."""
