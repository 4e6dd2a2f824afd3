"""Stage 1, what a run is: the Hydra schemas derived from constructors (`derive`, `schemas`), their checks,
the command line (`cli`), sweep parsing (`overrides`) and the whole-sweep check before job 0 (`preflight`)."""
