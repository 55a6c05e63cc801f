"""Stage 'lokr': the LyCORIS LoKr adapter (preset, network construction, kohya-key export)."""
