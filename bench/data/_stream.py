"""Stream a published CSV split in chunks into int32 category codes and float32 numerics, in bounded memory.

Two passes over train, one over every other split, each a `pyarrow.csv.open_csv` stream of ~16 MB blocks:
1. `count_values`: per categorical field, the count of every value in train (pyarrow's hash counts per block,
   merged every few blocks by a hash group-by: memory grows with the distinct values, not the rows);
2. `vocabularies`: the values seen at least `min_count` times, sorted, get codes 1..k; code 0 is out of
   vocabulary (rarer values, values first seen in valid/test, missing values);
3. `encode_split`: every split coded with train's vocabularies and appended to the cache (`_columnar.SplitWriter`).
A read or parse failure (a truncated or corrupt file, a bad value) is one `DataUnavailable` line naming the file
and the row near which it happened.

    schema = CsvSchema("criteo_x1", label="label", numeric=(...), categorical=(...), types={...})
    counts = count_values(source, schema, max_rows); vocab = vocabularies(counts, min_count=1)
    rows = encode_split(source, schema, vocab, writer, max_rows)
"""
from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any, Optional

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from ._columnar import SplitWriter
from ._fetch import DataUnavailable

__all__ = ["CsvSchema", "Source", "count_values", "vocabularies", "encode_split", "BLOCK_BYTES"]

BLOCK_BYTES = 16 << 20  # CSV bytes per parsed block (~80k Criteo rows)
_MERGE_EVERY = 32  # blocks of per-block value counts kept before they are merged into one table


@dataclass(frozen=True)
class CsvSchema:
    """The published columns of one dataset and what each becomes.

    `columns`: every column the published header has (a missing one is an error); `types`: how to parse them
    (columns not listed, such as ids that are not features, are never parsed); `label`: the 0/1 target;
    `numeric`: float32 features (missing -> 0); `categorical`: coded fields; `derive(batch)` adds categorical
    fields computed from the parsed columns (named in `derived`), after `categorical` in the code matrix."""

    dataset: str
    columns: tuple[str, ...]
    types: dict[str, pa.DataType]
    label: str
    numeric: tuple[str, ...] = ()
    categorical: tuple[str, ...] = ()
    derived: tuple[str, ...] = ()
    derive: Optional[Callable[[pa.RecordBatch], dict[str, pa.Array]]] = field(default=None, compare=False)

    @property
    def fields(self) -> tuple[str, ...]:
        """The categorical fields in code-matrix order."""
        return (*self.categorical, *self.derived)


@dataclass(frozen=True)
class Source:
    """One split's CSV: a plain file or a member of a zip archive. `name` is what messages call it."""

    name: str
    size: int  # uncompressed bytes (for progress)
    opener: Callable[[], IO[bytes]]


class _Counting(io.RawIOBase):
    """A read-only stream that reports the bytes read to a progress bar."""

    def __init__(self, raw: IO[bytes], bar: Any) -> None:
        self.raw, self.bar = raw, bar

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        self.bar.update(len(data))
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


_READ_ERRORS = (pa.ArrowException, OSError, EOFError, zlib.error, zipfile.BadZipFile, ValueError)


def _header(source: Source) -> list[str]:
    try:
        with source.opener() as f:
            line = f.readline(1 << 16).decode("utf-8", errors="replace")
    except _READ_ERRORS as exc:
        raise DataUnavailable(f"cannot read {source.name}: {type(exc).__name__}: {_short(exc)}") from None
    return [c.strip().strip('"') for c in line.rstrip("\r\n").split(",")] if line else []


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]


def check_columns(source: Source, schema: CsvSchema) -> None:
    """Raise one line naming the published columns that `source`'s header lacks."""
    header = _header(source)
    missing = [c for c in schema.columns if c not in header]
    if missing:
        raise DataUnavailable(f"{schema.dataset}: {source.name} lacks column(s) {', '.join(missing)} "
                              f"(its header: {', '.join(header[:12]) or 'empty'}{' ...' if len(header) > 12 else ''})")


def batches(source: Source, schema: CsvSchema, max_rows: Optional[int], desc: str) -> Iterator[pa.RecordBatch]:
    """The parsed record batches of `source` (at most `max_rows` rows), with a byte progress bar."""
    from tqdm import tqdm

    check_columns(source, schema)
    convert = pacsv.ConvertOptions(column_types=schema.types, include_columns=list(schema.types),
                                   strings_can_be_null=True)
    rows = 0
    with tqdm(total=source.size, desc=desc, unit="B", unit_scale=True, leave=False, mininterval=2) as bar:
        try:
            with _Counting(source.opener(), bar) as raw:
                reader = pacsv.open_csv(io.BufferedReader(raw, 1 << 20),
                                        read_options=pacsv.ReadOptions(block_size=BLOCK_BYTES),
                                        convert_options=convert)
                for batch in reader:
                    if max_rows is not None and rows + batch.num_rows >= max_rows:
                        yield batch.slice(0, max_rows - rows)
                        return
                    rows += batch.num_rows
                    yield batch
        except DataUnavailable:
            raise
        except _READ_ERRORS as exc:
            raise DataUnavailable(f"{schema.dataset}: {source.name} cannot be read near row {rows + 1} "
                                  f"({type(exc).__name__}: {_short(exc)}); is the file complete?") from None


def _categorical_columns(batch: pa.RecordBatch, schema: CsvSchema) -> dict[str, pa.Array]:
    cols = {name: batch.column(name) for name in schema.categorical}
    if schema.derive is not None:
        cols.update(schema.derive(batch))
    return cols


def _merge(parts: list[tuple[pa.Array, pa.Array]]) -> tuple[pa.Array, pa.Array]:
    table = pa.table({"v": pa.concat_arrays([p[0] for p in parts]), "n": pa.concat_arrays([p[1] for p in parts])})
    merged = table.group_by("v").aggregate([("n", "sum")])
    return merged["v"].combine_chunks(), merged["n_sum"].combine_chunks()


def count_values(source: Source, schema: CsvSchema, max_rows: Optional[int]) -> dict[str, tuple[pa.Array, pa.Array]]:
    """Per categorical field of train: (distinct values, their counts); missing values are left out."""
    parts: dict[str, list[tuple[pa.Array, pa.Array]]] = {f: [] for f in schema.fields}
    for batch in batches(source, schema, max_rows, f"{schema.dataset}: counting {source.name}"):
        for name, col in _categorical_columns(batch, schema).items():
            vc = pc.value_counts(col.drop_null())
            parts[name].append((vc.field("values"), vc.field("counts")))
            if len(parts[name]) >= _MERGE_EVERY:
                parts[name] = [_merge(parts[name])]
    return {name: _merge(p) if p else (pa.array([], pa.int64()), pa.array([], pa.int64())) for name, p in parts.items()}


def vocabularies(counts: dict[str, tuple[pa.Array, pa.Array]], min_count: int) -> dict[str, pd.Index]:
    """Per field, the sorted values counted at least `min_count` times (their codes are 1 + position)."""
    out = {}
    for name, (values, n) in counts.items():
        kept = values.filter(pc.greater_equal(n, min_count))
        kept = kept.take(pc.sort_indices(kept))
        out[name] = pd.Index(kept.to_numpy(zero_copy_only=False))
    return out


def _codes(col: pa.Array, vocab: pd.Index) -> np.ndarray:
    """int32 codes of `col`: 1 + position in `vocab`, 0 for values not in it and for missing values."""
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        enc = pc.dictionary_encode(col)
        lookup = np.append(vocab.get_indexer(enc.dictionary.to_numpy(zero_copy_only=False)) + 1, 0)
        return lookup[pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy()].astype(np.int32)
    codes = vocab.get_indexer(pc.fill_null(col, 0).to_numpy(zero_copy_only=False)) + 1
    if col.null_count:
        codes[col.is_null().to_numpy(zero_copy_only=False)] = 0
    return codes.astype(np.int32)


def _numeric(batch: pa.RecordBatch, schema: CsvSchema, source: Source, row: int) -> np.ndarray:
    if not schema.numeric:
        return np.zeros((batch.num_rows, 0), np.float32)
    x = np.stack([pc.fill_null(batch.column(c), 0.0).to_numpy(zero_copy_only=False) for c in schema.numeric], 1)
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise DataUnavailable(f"{schema.dataset}: {source.name} has a non-finite {schema.numeric[bad[1]]} at row "
                              f"{row + int(bad[0]) + 1}")
    return x


def _labels(batch: pa.RecordBatch, schema: CsvSchema, source: Source, row: int) -> np.ndarray:
    col = batch.column(schema.label)
    y = pc.fill_null(col, -1.0).to_numpy(zero_copy_only=False).astype(np.float32)
    bad = np.flatnonzero((y != 0) & (y != 1))
    if bad.size:
        raise DataUnavailable(f"{schema.dataset}: {source.name} has {schema.label}="
                              f"{col[int(bad[0])].as_py()!r} at row {row + int(bad[0]) + 1}; it must be 0 or 1")
    return y


def encode_split(source: Source, schema: CsvSchema, vocab: dict[str, pd.Index], writer: SplitWriter,
                 max_rows: Optional[int]) -> int:
    """Code `source` with `vocab` and append it to `writer`; return the rows written."""
    for batch in batches(source, schema, max_rows, f"{schema.dataset}: coding {source.name}"):
        cols = _categorical_columns(batch, schema)
        x_cat = np.stack([_codes(cols[f], vocab[f]) for f in schema.fields], axis=1) if schema.fields else \
            np.zeros((batch.num_rows, 0), np.int32)
        writer.write(_numeric(batch, schema, source, writer.rows), x_cat, _labels(batch, schema, source, writer.rows))
    return writer.rows
