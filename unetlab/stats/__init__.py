"""Statistics for ablations: intervals and tests over seeds, comparisons against a baseline variant."""
