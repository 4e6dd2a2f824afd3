#!/usr/bin/env python3
"""Copy a bench.report.tables report into docs/RESULTS.md between the markers of one section.

    python scripts/fill_results.py results/reproduce-quick/report/report.md docs/RESULTS.md --section cpu-quick
    python scripts/fill_results.py REPORT docs/RESULTS.md --section cpu-quick --took "24 min 10 s"

The target file holds `<!-- table:SECTION:start -->` and `<!-- table:SECTION:end -->`; everything between them
is replaced (markers are appended at the end of the file when missing). The write is atomic. Plots the report
links to are copied to `<target's folder>/SECTION/` and the links rewritten to point there. `--took` adds a line
saying how long the reproduction took (scripts/reproduce.sh passes its wall-clock).
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

from bench.results.files import atomic_write_text


def filled(document: str, section: str, table: str) -> str:
    """Return `document` with the text between the section's markers replaced by `table`."""
    start, end = f"<!-- table:{section}:start -->", f"<!-- table:{section}:end -->"
    if start not in document or end not in document:
        document = document.rstrip("\n") + f"\n\n{start}\n{end}\n"
    head, rest = document.split(start, 1)
    _, tail = rest.split(end, 1)
    return f"{head}{start}\n{table.strip()}\n{end}{tail}"


def with_local_plots(report: Path, target: Path, section: str) -> str:
    """Return the report's text with each linked PNG copied beside `target` (in `section/`) and relinked."""
    plots = target.parent / section
    def relink(m: re.Match) -> str:
        src = report.parent / m.group(2)
        if not src.is_file():
            return m.group(0)
        plots.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, plots / src.name)
        return f"![{m.group(1)}]({section}/{src.name})"
    return re.sub(r"!\[([^\]]*)\]\(([^)]+\.png)\)", relink, report.read_text())


def with_duration(text: str, took: str | None) -> str:
    """Return the report's text with a line saying how long its reproduction took, under its title."""
    if not took:
        return text
    head, sep, rest = text.partition("\n")
    return f"{head}{sep}\n- reproduced in {took} (wall-clock, sweeps and report){sep}{rest}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("report", type=Path, help="report.md written by python -m bench.report")
    p.add_argument("target", type=Path, help="the markdown file to fill (docs/RESULTS.md)")
    p.add_argument("--section", required=True, help="marker name, e.g. cpu-quick")
    p.add_argument("--took", help="how long the reproduction took, e.g. '24 min 10 s'")
    a = p.parse_args()
    if not a.report.is_file():
        sys.exit(f"fill_results.py: error: no report at {a.report}")
    doc = a.target.read_text() if a.target.is_file() else "# Results\n"
    report = with_duration(with_local_plots(a.report, a.target, a.section), a.took)
    atomic_write_text(a.target, filled(doc, a.section, report))
    print(f"filled section {a.section} of {a.target} from {a.report}")


if __name__ == "__main__":
    main()
