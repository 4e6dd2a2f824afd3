"""Stage 5, the report over result rows: the protocol (T_u, time and steps to target), tables and plots.

    python -m bench.report results [--out DIR]
"""
