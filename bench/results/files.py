"""Atomic files: a reader sees the old file or the whole new one, never a part (rows, checkpoints, caches,
benchmark outputs all go through here).

    from bench.results.files import atomic_write, atomic_write_text
    atomic_write_text(path, json.dumps(obj))
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["atomic_write", "atomic_write_text"]


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Write a file so that readers see the old one or the whole new one, never a part.

    `write(f)` fills a temp file `<stem>.<pid>.tmp` beside `path` (parallel writers never share one), which is
    fsynced and renamed over `path`; on any failure the temp file is removed and the error propagates.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """`atomic_write` of a text file (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode()))
