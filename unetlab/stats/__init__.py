"""Framework-neutral statistics for ablations: intervals and tests over seeds, comparisons against a
baseline variant, and the stopping rule of adaptive seeds."""
