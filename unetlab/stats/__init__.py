"""Framework-neutral statistics for comparing runs: tests, intervals and stopping rules."""
