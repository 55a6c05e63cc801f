"""Stage 12 'audit': diffs between checkpoints (merged or LoKr), released files and runs."""
