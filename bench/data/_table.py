"""Your own table as a benchmark dataset: a CSV, TSV, Parquet or JSON-lines file, or a saved `datasets` folder.

    python -m bench.run dataset=table dataset.path=churn.parquet dataset.label=churned
    from bench import data; ds = data.load("table", path="churn.csv", label="churned")

Files are read through Hugging Face `datasets`' local loaders (`csv`, `parquet`, `json`; compressed files such as
`.csv.gz` too), a folder through `datasets.load_from_disk` (a `DatasetDict` with `train` and `test` splits keeps
its split). Then, deterministically from the content and the options:

- **columns**: `label` is the target; `drop` lists columns to ignore; the rest are features. `categorical=None`
  (auto) embeds string and bool columns as categories (the embedding path of the CTR data) and standardises
  numeric columns with the training statistics; an explicit `categorical` list makes every other column numeric.
- **task** (`auto`): a bool or string target is binary (2 values) or multiclass; a numeric one is binary with 2
  values, multiclass when whole numbers with at most `MAX_AUTO_CLASSES` values, else regression (standardised with
  the training statistics). Classes are coded in sorted order: the larger of two values is the positive class.
- **missing values**: a missing category is a category of its own; missing or infinite numeric features follow
  `nan`: `error` (the default: one line saying how many and where), `drop` (those rows) or `zero` (0 after
  standardising: the training mean). A missing target is an error unless `nan=drop`.
- **split**: `test_path` (a second table with the same columns), else a fixed random `test_fraction` of the rows.

The cache of a table is keyed by its content (`table_fingerprint`: sha1 of the bytes), never by its name or path,
so an edited file is prepared again. Every problem with a table raises `TableError`: one line that starts with
the option at fault (`label='y': no such column in churn.csv; its columns: ...`).
"""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import pandas as pd

from ._cache import Prepared
from ._spec import dataset
from ._prep import SPLIT_SEED, TEST_FRACTION, codes, split_indices, standardize

__all__ = ["table", "table_fingerprint", "fingerprint", "check_options", "describe", "TableError", "FORMATS",
           "NAN_POLICIES", "TABLE_TASKS", "MAX_AUTO_CLASSES"]

FORMATS = {".csv": "csv", ".tsv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "json", ".json": "json",
           ".ndjson": "json"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
NAN_POLICIES = ("error", "drop", "zero")
TABLE_TASKS = ("auto", "binary", "multiclass", "regression")
MAX_AUTO_CLASSES = 20  # a numeric target of whole numbers with more distinct values than this is auto-regression
_MAX_SHOWN = 5  # rows or values quoted in a message


class TableError(ValueError):
    """A table or a table option that cannot be used: one line starting with `option=value: `."""

    def __init__(self, option: str, value: Any, reason: str) -> None:
        self.option, self.value, self.reason = option, value, reason
        super().__init__(f"{option}={value!r}: {reason}")

    def config_line(self) -> str:
        """The harness's one line for this error, naming the `dataset.` key at fault."""
        return f"<dataset.{self.option}={self.value!r}> is not allowed: {self.reason}"


# ----------------------------------------------------------------------------------------------- options
def check_options(path: Any = None, label: Any = None, task: Any = "auto", categorical: Any = None,
                  drop: Any = (), test_fraction: Any = TEST_FRACTION, test_path: Any = None, nan: Any = "error") -> None:
    """Check the table options' types and ranges (not the file): raise `TableError` naming the first bad one."""
    if not isinstance(path, (str, Path)) or not str(path):
        raise TableError("path", path, "name the table: a CSV, TSV, Parquet or JSON-lines file, or a folder saved "
                                       "with datasets' save_to_disk")
    if not isinstance(label, str) or not label:
        raise TableError("label", label, "name the column to predict (the target column)")
    if task not in TABLE_TASKS:
        raise TableError("task", task, f"one of {', '.join(TABLE_TASKS)}")
    for option, value in (("categorical", categorical), ("drop", drop)):
        if value is None and option == "categorical":
            continue
        if isinstance(value, str) or not isinstance(value, Sequence) or not all(isinstance(c, str) for c in value):
            raise TableError(option, value, "a list of column names" + (" or null (auto)" if option == "categorical" else ""))
        if label in value:
            raise TableError(option, list(value), f"it lists the label column {label!r}")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) or not 0 < test_fraction < 1:
        raise TableError("test_fraction", test_fraction, "a number in (0, 1)")
    if test_path is not None and (not isinstance(test_path, (str, Path)) or not str(test_path)):
        raise TableError("test_path", test_path, "a file or folder like path, or null (a split of path)")
    if nan not in NAN_POLICIES:
        raise TableError("nan", nan, f"one of {', '.join(NAN_POLICIES)}")


# ------------------------------------------------------------------------------------------- fingerprint
_MEMO: dict[tuple, str] = {}


def _files(p: Path) -> list[Path]:
    return [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())


def fingerprint(path: str | Path, option: str = "path") -> str:
    """sha1 (16 hex) of a file's bytes, or of a folder's files (relative names and bytes).

    Remembered in this process per (path, size, mtime) of every file, so a sweep hashes an unchanged table once."""
    p = Path(path).expanduser()
    if not p.exists():
        raise TableError(option, str(path), "no such file or folder")
    files = _files(p)
    stamp = (str(p.resolve()), tuple((str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns)
                                     for f in files) if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns))
    if stamp not in _MEMO:
        digest = hashlib.sha1()
        for f in files:
            digest.update(str(f.relative_to(p)).encode() + b"\0" if p.is_dir() else b"")
            with open(f, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
        _MEMO[stamp] = digest.hexdigest()[:16]
    return _MEMO[stamp]


def table_fingerprint(path: Any = None, test_path: Any = None, **options: Any) -> str:
    """The content key of a table's cache and run id: the fingerprint of `path`, and of `test_path` if given."""
    check_options(path=path, test_path=test_path, **options)
    fp = fingerprint(path)
    if test_path is None:
        return fp
    return hashlib.sha1(f"{fp}:{fingerprint(test_path, 'test_path')}".encode()).hexdigest()[:16]


# -------------------------------------------------------------------------------------------------- reading
def _format(p: Path, option: str) -> str:
    suffixes = [s.lower() for s in p.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    if not suffixes or suffixes[-1] not in FORMATS:
        raise TableError(option, str(p), f"unknown format {''.join(p.suffixes) or '(no suffix)'}: one of "
                                         f"{', '.join(FORMATS)} (optionally compressed), or a saved datasets folder")
    return suffixes[-1]


def _one_line(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = " ".join(str(exc).split())[:200]
    if cause is not None and str(cause).strip():
        text += f" ({type(cause).__name__}: {' '.join(str(cause).split())[:200]})"
    return f"{type(exc).__name__}: {text}"


def _read_file(p: Path, option: str, work: Path) -> pd.DataFrame:
    import datasets

    suffix = _format(p, option)
    if p.stat().st_size == 0:
        raise TableError(option, str(p), "the file is empty (0 bytes)")
    kwargs = {"sep": "\t"} if suffix == ".tsv" else {}
    bars_were_on = not datasets.utils.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        with tempfile.TemporaryDirectory(dir=work, prefix=".table-") as cache:
            ds = datasets.load_dataset(FORMATS[suffix], data_files=str(p), split="train", cache_dir=cache, **kwargs)
            return ds.to_pandas()
    except ValueError as exc:
        if "corresponds to no data" in str(exc):
            raise TableError(option, str(p), "the table has no rows") from None
        raise TableError(option, str(p), f"cannot be read as {suffix[1:]}: {_one_line(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - a file the loader rejects, whatever the reason, is one line
        if "No columns to parse" in str(exc.__cause__ or ""):
            raise TableError(option, str(p), "the file has no columns (empty)") from None
        raise TableError(option, str(p), f"cannot be read as {suffix[1:]}: {_one_line(exc)}") from None
    finally:
        if bars_were_on:
            datasets.enable_progress_bars()


def _read_folder(p: Path, option: str) -> tuple[pd.DataFrame, Optional[pd.DataFrame]]:
    import datasets

    try:
        loaded = datasets.load_from_disk(str(p))
    except Exception as exc:  # noqa: BLE001
        raise TableError(option, str(p), f"a folder must be saved with datasets' save_to_disk: {_one_line(exc)}") from None
    if isinstance(loaded, datasets.DatasetDict):
        if "train" not in loaded:
            raise TableError(option, str(p), f"a saved DatasetDict needs a 'train' split; it has {', '.join(loaded)}")
        test = next((loaded[s] for s in ("test", "validation") if s in loaded), None)
        return loaded["train"].to_pandas(), None if test is None else test.to_pandas()
    return loaded.to_pandas(), None


def _read(path: str, option: str, work: Path) -> tuple[pd.DataFrame, Optional[pd.DataFrame]]:
    p = Path(path).expanduser()
    if not p.exists():
        raise TableError(option, str(path), "no such file or folder")
    frames = _read_folder(p, option) if p.is_dir() else (_read_file(p, option, work), None)
    if len(frames[0]) == 0:
        raise TableError(option, str(path), "the table has no rows")
    return frames


# ------------------------------------------------------------------------------------------- column roles
def _sample(values: Sequence[Any]) -> str:
    shown = [repr(v) for v in list(values)[:_MAX_SHOWN]]
    return ", ".join(shown) + (", ..." if len(values) > _MAX_SHOWN else "")


def _nonscalar(series: pd.Series) -> Optional[str]:
    """The type name of the first list/dict/array/bytes value of an object column, else None."""
    for v in series.dropna().head(1000):
        if isinstance(v, (list, tuple, np.ndarray)):
            return "list"
        if isinstance(v, (dict, bytes, set)):
            return type(v).__name__
    return None


def _as_numbers(series: pd.Series) -> Optional[np.ndarray]:
    """The column as float64 (missing -> NaN; bools 0/1), or None when it holds values that are not numbers."""
    if pd.api.types.is_datetime64_any_dtype(series):
        return None
    if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    try:
        return pd.to_numeric(series, errors="raise").to_numpy(dtype=np.float64, na_value=np.nan)
    except (ValueError, TypeError):
        return None


def _roles(frame: pd.DataFrame, label: str, categorical: Optional[Sequence[str]], drop: Sequence[str],
           source: str) -> tuple[list[str], list[str]]:
    """Return (categorical, numeric) feature columns; a column that is neither raises TableError."""
    columns = [str(c) for c in frame.columns]
    for option, names in (("drop", drop), ("categorical", categorical or [])):
        unknown = [c for c in names if c not in columns]
        if unknown:
            raise TableError(option, list(names), f"no column(s) {', '.join(map(repr, unknown))} in {source}; "
                                                  f"its columns: {few(columns, 12)}")
    features = [c for c in columns if c != label and c not in drop]
    if not features:
        raise TableError("label", label, f"{source} has no feature columns besides the label (and drop)")
    cat, num = [], []
    for c in features:
        s = frame[c]
        kind = _nonscalar(s) if s.dtype == object else None
        if kind is not None:
            raise TableError("drop", list(drop), f"column {c!r} of {source} holds {kind} values: neither categorical "
                                                 f"nor numeric; list it in drop")
        listed = categorical is not None and c in categorical
        if not listed and (pd.api.types.is_datetime64_any_dtype(s) or isinstance(s.dtype, pd.PeriodDtype)):
            raise TableError("drop", list(drop), f"column {c!r} of {source} holds timestamps: neither categorical nor "
                                                 f"numeric; convert it to a number, or list it in drop")
        if categorical is not None:
            if c in categorical:
                cat.append(c)
            elif _as_numbers(s) is None:
                bad = sorted(map(str, s.dropna()[pd.to_numeric(s.dropna(), errors="coerce").isna()].unique()))
                raise TableError("categorical", list(categorical), f"column {c!r} of {source} holds strings that are "
                                 f"not numbers ({_sample(bad)}); list it in categorical, or in drop")
            else:
                num.append(c)
        elif pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
            num.append(c)
        else:
            distinct = s.nunique(dropna=True)
            if distinct > 100 and distinct > 0.5 * s.notna().sum():
                raise TableError("categorical", None, f"column {c!r} of {source} holds {distinct} distinct strings in "
                                 f"{len(s)} rows ({_sample(s.dropna().unique())}): neither categorical nor numeric "
                                 f"(an id or free text?); list it in drop, or name the categorical columns yourself")
            cat.append(c)
    return cat, num


# ------------------------------------------------------------------------------------------------- target
def _describe_values(values: list) -> str:
    return _sample(values)


def _target(y: pd.Series, task: str, label: str, source: str) -> tuple[str, np.ndarray, int, dict]:
    """Return (task, coded target, num_classes, info) for the label column (no missing values left)."""
    values = pd.Series(y.unique()).tolist()  # plain Python scalars, in sorted order (by text when types mix)
    try:
        values = sorted(values)
    except TypeError:
        values = sorted(values, key=str)
    numbers = _as_numbers(y)
    if len(values) < 2:
        raise TableError("label", label, f"column {label!r} of {source} has one value ({_describe_values(values)}) in "
                                         f"{len(y)} rows: a target needs two classes or varying numbers")
    whole = numbers is not None and bool(np.all(np.mod(numbers, 1) == 0))
    how = f"set by task={task}"
    if task == "auto":
        if numbers is None or pd.api.types.is_bool_dtype(y):
            task = "binary" if len(values) == 2 else "multiclass"
            how = f"auto: {len(values)} distinct non-numeric values"
        elif len(values) == 2:
            task, how = "binary", "auto: 2 distinct values"
        elif whole and len(values) <= MAX_AUTO_CLASSES:
            task, how = "multiclass", f"auto: {len(values)} distinct whole numbers (<= {MAX_AUTO_CLASSES})"
        else:
            task, how = "regression", f"auto: {len(values)} distinct numbers"
    if task == "regression":
        if numbers is None or pd.api.types.is_bool_dtype(y):
            raise TableError("task", task, f"column {label!r} of {source} holds values that are not numbers "
                                           f"({_describe_values(values)}); a regression target must be numeric")
        return task, numbers.astype(np.float32), 1, {"how": how}
    if task == "binary" and len(values) != 2:
        raise TableError("task", task, f"column {label!r} of {source} has {len(values)} distinct values "
                                       f"({_describe_values(values)}); binary needs exactly 2")
    index = {v: i for i, v in enumerate(values)}
    coded = np.array([index[v] for v in y.tolist()], dtype=np.int64)
    classes = [str(v) for v in values]
    if task == "binary":
        return task, coded.astype(np.float32), 1, {"how": how, "classes": classes, "positive": classes[1]}
    return task, coded, len(values), {"how": how, "classes": classes[:100]}


# -------------------------------------------------------------------------------------------- missing values
def _where(rows: np.ndarray) -> str:
    shown = ", ".join(str(int(r)) for r in rows[:_MAX_SHOWN])
    return f"{len(rows)} row{'s' if len(rows) != 1 else ''} ({shown}{', ...' if len(rows) > _MAX_SHOWN else ''})"


def _missing(frame: pd.DataFrame, numeric: list[str], label: str, nan: str, source: str) -> np.ndarray:
    """Return the mask of rows to keep under the `nan` policy; raise TableError when it is `error` and some
    numeric feature is missing or infinite, or when the target is missing and the policy is not `drop`."""
    bad_label = frame[label].isna().to_numpy()
    if bad_label.any() and nan != "drop":
        raise TableError("nan", nan, f"the label column {label!r} of {source} is missing in "
                                     f"{_where(np.flatnonzero(bad_label))} (0-based data rows); nan=drop drops them")
    bad_cols = {c: np.flatnonzero(~np.isfinite(_as_numbers(frame[c]))) for c in numeric}
    bad_cols = {c: rows for c, rows in bad_cols.items() if len(rows)}
    if bad_cols and nan == "error":
        total = sum(len(r) for r in bad_cols.values())
        where = "; ".join(f"{c!r} in {_where(rows)}" for c, rows in bad_cols.items())
        raise TableError("nan", nan, f"{total} missing or infinite values in the numeric features of {source}: "
                                     f"{where} (0-based data rows); nan=drop drops those rows, nan=zero fills them "
                                     f"with 0 after standardising (the training mean)")
    keep = ~bad_label
    if nan == "drop":
        for rows in bad_cols.values():
            keep[rows] = False
    return keep


def _numeric_block(frame: pd.DataFrame, numeric: list[str]) -> np.ndarray:
    if not numeric:
        return np.zeros((len(frame), 0), np.float64)
    return np.stack([_as_numbers(frame[c]) for c in numeric], axis=1)


def _fill_and_standardize(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Standardise with the finite training values' statistics; non-finite entries become 0 (the training mean)."""
    if not train.shape[1]:
        return train.astype(np.float32), test.astype(np.float32)
    finite = np.where(np.isfinite(train), train, np.nan)
    with np.errstate(all="ignore"):
        mean = np.nan_to_num(np.nanmean(finite, axis=0)) if len(train) else np.zeros(train.shape[1])
    train = np.where(np.isfinite(train), train, mean)
    test = np.where(np.isfinite(test), test, mean)
    return standardize(train, test)


# ------------------------------------------------------------------------------------------------ builder
@dataset("file", description=("your own table (CSV, TSV, Parquet, JSON lines, a saved datasets folder): "
         "bench.run dataset=table dataset.path=FILE dataset.label=COLUMN"),
         locations=("path", "test_path"), fingerprint=table_fingerprint)
def table(downloads: Path, path: Optional[str] = None, label: Optional[str] = None, task: str = "auto",
          categorical: Optional[Sequence[str]] = None, drop: Sequence[str] = (), test_fraction: float = TEST_FRACTION,
          test_path: Optional[str] = None, nan: str = "error") -> Prepared:
    """Prepare the table at `path` (see the module docstring); `downloads` holds the loader's scratch files."""
    check_options(path, label, task, categorical, drop, test_fraction, test_path, nan)
    drop = list(drop)
    downloads.mkdir(parents=True, exist_ok=True)
    source = Path(path).name
    train_df, test_df = _read(str(path), "path", downloads)
    if test_path is not None:
        if test_df is not None:
            raise TableError("test_path", str(test_path), f"{source} already holds a test split")
        test_df, extra = _read(str(test_path), "test_path", downloads)
        if extra is not None:
            raise TableError("test_path", str(test_path), "a saved DatasetDict cannot be a test table; save one split")
    for df, where, option in ((train_df, source, "path"), (test_df, Path(str(test_path or path)).name, "test_path")):
        if df is not None and label not in [str(c) for c in df.columns]:
            raise TableError("label", label, f"no such column in {where}; its columns: "
                                             f"{few(list(df.columns), 12)}")
    train_df.columns = [str(c) for c in train_df.columns]
    if test_df is not None:
        test_df.columns = [str(c) for c in test_df.columns]
        missing = [c for c in train_df.columns if c not in test_df.columns and c not in drop]
        if missing:
            raise TableError("test_path", str(test_path or path), f"the test table lacks column(s) {', '.join(missing)}")
        test_df = test_df[list(train_df.columns)]
    frame = pd.concat([train_df, test_df], ignore_index=True) if test_df is not None else train_df
    is_test = np.zeros(len(frame), bool)
    if test_df is not None:
        is_test[len(train_df):] = True
    cat, num = _roles(frame, label, categorical, drop, source)
    keep = _missing(frame, num, label, nan, source)
    frame, is_test = frame[keep].reset_index(drop=True), is_test[keep]
    if len(frame) == 0:
        raise TableError("nan", nan, f"no rows of {source} are left after dropping the ones with missing values")
    task, y, num_classes, target_info = _target(frame[label], task, label, source)
    if test_df is not None:
        train_rows, test_rows = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    else:
        train_rows, test_rows = split_indices(len(frame), test_fraction, SPLIT_SEED)
    if len(train_rows) < 2 or len(test_rows) < 1:
        raise TableError("test_fraction" if test_path is None else "test_path", test_fraction if test_path is None else
                         str(test_path), f"{len(frame)} rows give {len(train_rows)} training and {len(test_rows)} "
                                         f"test rows: too few to train and evaluate")
    coded = [codes(frame[c].to_numpy(dtype=object)) for c in cat]
    x_cat = np.stack([c for c, _ in coded], axis=1) if coded else np.zeros((len(frame), 0), np.int32)
    x_num = _numeric_block(frame, num)
    num_tr, num_te = _fill_and_standardize(x_num[train_rows], x_num[test_rows])
    if task == "regression":  # standardised like the features: the metric (mse) is in units of the target's std
        y_tr, y_te = standardize(y[train_rows, None], y[test_rows, None])
        target_info.update(mean=float(np.mean(y[train_rows])), std=float(np.std(y[train_rows]) or 1.0))
        y_tr, y_te = y_tr[:, 0], y_te[:, 0]
    else:
        y_tr, y_te = y[train_rows], y[test_rows]
    info = {"source": source, "test_source": Path(str(test_path)).name if test_path else None, "label": label,
            "task": task, "target": target_info, "categorical": cat, "numeric": num, "dropped": drop,
            "rows_read": int(len(keep)), "rows_dropped_nan": int((~keep).sum()),
            "split": "test_path" if test_df is not None else f"random {test_fraction:g} (seed {SPLIT_SEED})"}
    return Prepared(task, num_classes, [k for _, k in coded],
                    {"x_num": num_tr, "x_cat": x_cat[train_rows], "y": y_tr},
                    {"x_num": num_te, "x_cat": x_cat[test_rows], "y": y_te}, info=info)


def few(items: list, most: int = 6) -> str:
    """A list for a log line: its first `most` items and how many there are in all (an image table has 784 columns)."""
    items = [str(i) for i in items]
    if not items:
        return "-"
    return ", ".join(items) if len(items) <= most else f"{', '.join(items[:most])}, ... ({len(items)} in all)"


def describe(meta: dict[str, Any], source: Optional[str] = None) -> str:
    """One line saying what was made of a prepared table (its cache metadata): task and why, columns, rows.
    `source` names the file this run read (the cache is keyed by content: it may have been prepared from another
    path with the same content); by default the one it was prepared from."""
    info = meta.get("info", {})
    target = info.get("target", {})
    positive = f", positive class {target['positive']!r}" if "positive" in target else ""
    cat, num = info.get("categorical", []), info.get("numeric", [])
    rows = meta.get("rows", {})
    dropped = f", {info['rows_dropped_nan']} rows with missing values dropped" if info.get("rows_dropped_nan") else ""
    return (f"table {source or info.get('source')}: task {meta.get('task')} ({target.get('how')}{positive}) from "
            f"column {info.get('label')!r}; {len(cat)} categorical ({few(cat)}), {len(num)} numeric "
            f"({few(num)}); {rows.get('train')} train / {rows.get('test')} test rows{dropped}")
