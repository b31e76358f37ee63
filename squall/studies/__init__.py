"""Studies built of runs: hunt, soak, the parameter matrix, capacity."""
