"""`python -m bench.report`: the report over result rows (bench.report.tables)."""
from .tables import main

main()
