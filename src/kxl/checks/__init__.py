"""Stage checks: gates between the data/plan stages and training (count gates)."""
