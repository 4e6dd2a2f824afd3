"""Stage 4, what a run leaves: the typed result row (`rows`), the run identity (`identity`), atomic files
(`files`), W&B and local logs (`logger`), provenance and the sweep progress line (`callbacks`)."""
