"""Stage 3, training: the loop with its fair clock (`loop`, `timing`), metrics, the probe, checkpoints and
preemption, the per-run lock and data-parallel helpers."""
