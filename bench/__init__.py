"""nws-bench harness: datasets, models, training loop with fair timing, logging, results and reports."""
