"""The canonical interaction data every source produces, its checks, and its files.

Canonical tables (exact column names and dtypes):

  interactions  user_id str, item_id str, timestamp int64 (seconds since the epoch),
                hour int64 (0..23; the UTC hour of `timestamp` when the source has none),
                label float32 (1.0 = an observed interaction, i.e. implicit feedback),
                [rating float32 when the source has ratings], [context columns, e.g. device]
  items         item_id str, genres str (pipe-separated tokens, "unknown" when a source
                has none, never ""), title str (may be ""), year int64 (0 = unknown),
                [extra item feature columns]
  users         user_id str, [user feature columns, e.g. age int64, gender str]  (optional)

Every item_id of `interactions` is in `items` (which may hold items nobody interacted
with: cold-start catalogue items), and every user_id is in `users` when there is one.

Sources build tables from whatever they read and call `canonicalize`, which coerces
dtypes, fills defaults and validates. Errors are `DataError`s naming the file, the line
(1-based, the header is line 1) or field, and what was expected.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

INTERACTION_COLUMNS = ("user_id", "item_id", "timestamp", "hour", "label")
ITEM_COLUMNS = ("item_id", "genres", "title", "year")
UNKNOWN_GENRE = "unknown"
UNKNOWN_YEAR = 0  # `year` is 0 when the source does not say

# dtypes of the columns the contract names; any other column keeps the dtype it came with.
_INT_COLUMNS = ("timestamp", "hour", "year", "age")
_FLOAT_COLUMNS = ("label", "rating")
_STRING_COLUMNS = ("genres", "title", "gender", "occupation", "device")
_TABLES = ("interactions", "items", "users")


class DataError(ValueError):
  """Bad input. The message names the file, the row (1-based line number in the file,
  counting the header as line 1) or field, and what was expected."""


@dataclass
class InteractionData:
  name: str  # e.g. "synthetic", "movielens-latest-small", "movielens-100k", "csv"
  schema_name: str  # curated schema: "synthetic", "movielens", "movielens_users", "interactions"
  interactions: pd.DataFrame
  items: pd.DataFrame
  users: pd.DataFrame | None = None


@dataclass(frozen=True)
class Origin:
  """Where a table came from, so an error can point at the line a bad row was read from.

  `first_line` is the file line of the table's first row: 2 for a file with a header,
  1 without one, None for a table built in memory (errors then name the row, 1-based).
  """

  path: str
  first_line: int | None = 2

  def where(self, row: int) -> str:
    if self.first_line is None:
      return f"{self.path} row {row + 1}"
    return f"{self.path} line {self.first_line + row}"


def _origins(name: str, origins: Mapping[str, Origin] | None) -> dict[str, Origin]:
  given = dict(origins or {})
  return {t: given.get(t, Origin(f"{t} table of '{name}'", None)) for t in _TABLES}


def hour_of_day(timestamps) -> np.ndarray:
  """UTC hour (0..23) of epoch seconds."""
  return (np.asarray(timestamps, dtype=np.int64) // 3600) % 24


# ---------------------------------------------------------------------------------------
# Coercion: raw frames (often all strings) -> canonical dtypes, with line-accurate errors.


def _fail(origin: Origin, row: int, col: str, expected: str, got) -> DataError:
  return DataError(f"{origin.where(row)}: field '{col}': expected {expected}, got {got!r}")


def _first(mask) -> int:
  return int(np.argmax(np.asarray(mask)))


def _require(df: pd.DataFrame, columns, origin: Origin) -> None:
  for col in columns:
    if col not in df.columns:
      found = ", ".join(map(str, df.columns)) or "none"
      raise DataError(f"{origin.path}: missing required column '{col}' (found: {found})")


def _blank_rows(s: pd.Series) -> np.ndarray | None:
  """Mask of missing or blank values, or None when there are none (checked on the
  distinct values: a 5M-row id column has far fewer)."""
  distinct = pd.Series(pd.unique(s), dtype=object)
  blank = distinct[distinct.isna() | (distinct.astype(str).str.strip() == "")]
  if len(blank) == 0:
    return None
  return (s.isna() | s.isin(blank.dropna())).to_numpy()


def _strings(s: pd.Series, origin: Origin, *, allow_empty: bool) -> pd.Series:
  missing = s.isna().to_numpy()
  if missing.any():
    row = _first(missing)
    raise _fail(origin, row, s.name, "a value", "")
  if pd.api.types.infer_dtype(s, skipna=False) != "string":
    s = s.astype(str)
  if not allow_empty and (blank := _blank_rows(s)) is not None:
    raise _fail(origin, _first(blank), s.name, "a non-empty id", s.iloc[_first(blank)])
  return s.astype(object)


def _integers(s: pd.Series, origin: Origin, expected: str) -> pd.Series:
  if pd.api.types.is_integer_dtype(s.dtype):
    return s.astype(np.int64)
  num = pd.to_numeric(s, errors="coerce")
  values = num.to_numpy(dtype=np.float64, na_value=np.nan)
  bad = ~np.isfinite(values) | (values != np.floor(values))  # also catches "1.5", "inf"
  if bad.any():
    row = _first(bad)
    raise _fail(origin, row, s.name, expected, s.iloc[row])
  return num.astype(np.int64)


def _floats(s: pd.Series, origin: Origin) -> pd.Series:
  num = pd.to_numeric(s, errors="coerce")
  bad = num.isna().to_numpy()
  if bad.any():
    row = _first(bad)
    raise _fail(origin, row, s.name, "a number", s.iloc[row])
  return num.astype(np.float32)


def _coerce_features(df: pd.DataFrame, origin: Origin) -> pd.DataFrame:
  """Coerce the contract's named feature columns that are present; others stay as they are."""
  for col in df.columns:
    if col in _INT_COLUMNS:
      df[col] = _integers(df[col], origin, "an integer")
    elif col in _FLOAT_COLUMNS:
      df[col] = _floats(df[col], origin)
    elif col in _STRING_COLUMNS:
      df[col] = _strings(df[col], origin, allow_empty=True)
  return df


def _canonical_interactions(df: pd.DataFrame, origin: Origin) -> pd.DataFrame:
  df = df.reset_index(drop=True).copy()
  df.columns = [str(c).strip() for c in df.columns]
  _require(df, ("user_id", "item_id", "timestamp"), origin)
  for col in ("user_id", "item_id"):
    df[col] = _strings(df[col], origin, allow_empty=False)
  df["timestamp"] = _integers(df["timestamp"], origin, "an integer number of seconds")
  if "hour" not in df.columns:
    df["hour"] = hour_of_day(df["timestamp"].to_numpy())
  if "label" not in df.columns:
    df["label"] = np.float32(1.0)
  df = _coerce_features(df, origin)
  front = list(INTERACTION_COLUMNS) + (["rating"] if "rating" in df.columns else [])
  return df[front + [c for c in df.columns if c not in front]]


def _canonical_items(df: pd.DataFrame, origin: Origin) -> pd.DataFrame:
  df = df.reset_index(drop=True).copy()
  df.columns = [str(c).strip() for c in df.columns]
  _require(df, ("item_id",), origin)
  df["item_id"] = _strings(df["item_id"], origin, allow_empty=False)
  defaults = {"genres": UNKNOWN_GENRE, "title": "", "year": UNKNOWN_YEAR}
  for col, default in defaults.items():
    if col not in df.columns:
      df[col] = default
  df["genres"] = df["genres"].fillna("").astype(str).str.strip().replace("", UNKNOWN_GENRE)
  df["title"] = df["title"].fillna("")
  df["year"] = df["year"].replace("", UNKNOWN_YEAR).fillna(UNKNOWN_YEAR)
  df = _coerce_features(df, origin)
  return df[list(ITEM_COLUMNS) + [c for c in df.columns if c not in ITEM_COLUMNS]]


def _canonical_users(df: pd.DataFrame, origin: Origin) -> pd.DataFrame:
  df = df.reset_index(drop=True).copy()
  df.columns = [str(c).strip() for c in df.columns]
  _require(df, ("user_id",), origin)
  df["user_id"] = _strings(df["user_id"], origin, allow_empty=False)
  df = _coerce_features(df, origin)
  return df[["user_id"] + [c for c in df.columns if c != "user_id"]]


def canonicalize(
    name: str,
    schema_name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None = None,
    origins: Mapping[str, Origin] | None = None,
) -> InteractionData:
  """Coerce raw tables to the canonical columns and dtypes, fill defaults, validate.

  Rows must still be in file order so errors can name the line (see `Origin`).
  `origins` maps "interactions" / "items" / "users" to where each table was read from.
  """
  where = _origins(name, origins)
  data = InteractionData(
      name=name,
      schema_name=schema_name,
      interactions=_canonical_interactions(interactions, where["interactions"]),
      items=_canonical_items(items, where["items"]),
      users=None if users is None else _canonical_users(users, where["users"]),
  )
  validate(data, origins)
  return data


# ---------------------------------------------------------------------------------------
# Validation of canonical data.

_DTYPES = {
    "interactions": {"user_id": "str", "item_id": "str", "timestamp": "int64", "hour": "int64",
                     "label": "float32"},
    "items": {"item_id": "str", "genres": "str", "title": "str", "year": "int64"},
    "users": {"user_id": "str"},
}


def _check_columns(table: str, df: pd.DataFrame, origin: Origin) -> None:
  _require(df, _DTYPES[table], origin)
  for col, dtype in _DTYPES[table].items():
    ok = df[col].dtype == object if dtype == "str" else df[col].dtype == np.dtype(dtype)
    if not ok:
      raise DataError(f"{origin.path}: field '{col}': expected dtype {dtype}, got {df[col].dtype}")
  if "rating" in df.columns and df["rating"].dtype != np.float32:
    raise DataError(f"{origin.path}: field 'rating': expected dtype float32, "
                    f"got {df['rating'].dtype}")


def _check_ids(df: pd.DataFrame, col: str, origin: Origin) -> None:
  bad = _blank_rows(df[col])
  if bad is not None:
    raise _fail(origin, _first(bad), col, "a non-empty id", df[col].iloc[_first(bad)])


def _check_unique(df: pd.DataFrame, col: str, origin: Origin) -> None:
  dup = df[col].duplicated().to_numpy()
  if dup.any():
    row = _first(dup)
    raise DataError(f"{origin.where(row)}: field '{col}': expected unique ids, "
                    f"{df[col].iloc[row]!r} appears twice")


def _check_known(df: pd.DataFrame, col: str, known: pd.Series, origin: Origin,
                 table: Origin) -> None:
  unknown = ~df[col].isin(known).to_numpy()
  if unknown.any():
    row = _first(unknown)
    raise DataError(f"{origin.where(row)}: field '{col}': {df[col].iloc[row]!r} "
                    f"is not in {table.path}")


def validate(data: InteractionData, origins: Mapping[str, Origin] | None = None) -> None:
  """Raise DataError unless `data` meets the canonical contract (module docstring)."""
  where = _origins(data.name, origins)
  inter, items, users = data.interactions, data.items, data.users
  for table, df in (("interactions", inter), ("items", items), ("users", users)):
    if df is None:
      continue
    if len(df) == 0:
      raise DataError(f"{where[table].path}: no rows, expected at least one")
    _check_columns(table, df, where[table])
  o = where["interactions"]
  _check_ids(inter, "user_id", o)
  _check_ids(inter, "item_id", o)
  bad_hour = ((inter["hour"] < 0) | (inter["hour"] > 23)).to_numpy()
  if bad_hour.any():
    row = _first(bad_hour)
    raise _fail(o, row, "hour", "an hour of day 0..23", int(inter["hour"].iloc[row]))
  bad_label = ~np.isfinite(inter["label"].to_numpy())
  if bad_label.any():
    row = _first(bad_label)
    raise _fail(o, row, "label", "a finite number", inter["label"].iloc[row])

  _check_ids(items, "item_id", where["items"])
  _check_unique(items, "item_id", where["items"])
  empty_genres = (items["genres"].str.strip() == "").to_numpy()
  if empty_genres.any():
    raise _fail(where["items"], _first(empty_genres), "genres", f"genres or '{UNKNOWN_GENRE}'", "")
  _check_known(inter, "item_id", items["item_id"], o, where["items"])

  if users is not None:
    _check_ids(users, "user_id", where["users"])
    _check_unique(users, "user_id", where["users"])
    _check_known(inter, "user_id", users["user_id"], o, where["users"])


# ---------------------------------------------------------------------------------------
# Reading a CSV file that has a header, with errors that name the file and line.


def read_csv_table(path: str, *, dtype: Mapping[str, object] | None = None,
                   encoding: str = "utf-8") -> pd.DataFrame:
  """Read a comma-separated file with a header row. Row i of the frame is file line i + 2.

  Empty cells stay "" (not NaN) so ids like "NA" survive; trailing blank lines are dropped.
  """
  if not os.path.exists(path):
    raise DataError(f"{path}: no such file")
  if os.path.isdir(path):
    raise DataError(f"{path}: is a directory, expected a CSV file")
  if os.path.getsize(path) == 0:
    raise DataError(f"{path}: file is empty, expected a header row and data rows")
  try:
    df = pd.read_csv(path, dtype=dtype, keep_default_na=False, skip_blank_lines=False,
                     encoding=encoding)
  except pd.errors.ParserError as e:
    # pandas names the 1-based file line: "... Expected 4 fields in line 3, saw 5".
    m = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(e))
    if m is None:
      raise DataError(f"{path}: not a valid CSV file ({str(e).strip()})") from e
    expected, line, got = m.groups()
    raise DataError(f"{path} line {line}: expected {expected} comma-separated fields like the "
                    f"header (quote fields that contain commas), got {got}") from e
  except UnicodeDecodeError as e:
    raise DataError(f"{path}: not valid {encoding} text at byte {e.start}") from e
  except pd.errors.EmptyDataError as e:
    raise DataError(f"{path}: file is empty, expected a header row and data rows") from e
  df.columns = [str(c).strip() for c in df.columns]
  n = len(df)
  while n > 0 and (df.iloc[n - 1].astype(str) == "").all():
    n -= 1
  if n == 0:
    raise DataError(f"{path}: no data rows after the header line")
  return df.iloc[:n]


# ---------------------------------------------------------------------------------------
# Canonical files: interactions.csv, items.csv, users.csv and meta.json, written atomically.

_META = "meta.json"


def _write_csv(df: pd.DataFrame, path: str) -> None:
  # Standard CSV: header row, comma-separated, fields quoted only when needed.
  df.to_csv(path, index=False, lineterminator="\n")


def _fingerprint(directory: str) -> str | None:
  """Hash of the canonical files in `directory` (None when it is not a canonical dir)."""
  if not os.path.isfile(os.path.join(directory, _META)):
    return None
  digest = hashlib.sha256()
  for name in sorted(os.listdir(directory)):
    if name == _META or name.endswith(".csv"):
      digest.update(name.encode() + b"\0")
      with open(os.path.join(directory, name), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
          digest.update(block)
  return digest.hexdigest()


def _paths(directory: str, data: InteractionData) -> dict[str, str]:
  tables = [t for t in _TABLES if getattr(data, t) is not None]
  paths = {t: os.path.join(directory, f"{t}.csv") for t in tables}
  return {**paths, "meta": os.path.join(directory, _META), "dir": directory}


def _swap_into_place(new: str, target: str) -> None:
  """Rename directory `new` to `target`, replacing an existing `target` (put back on failure)."""
  if not os.path.lexists(target):
    os.replace(new, target)
    return
  parent, base = os.path.split(target)
  trash = tempfile.mkdtemp(prefix=f".{base}.old-", dir=parent)
  os.replace(target, os.path.join(trash, base))
  try:
    os.replace(new, target)
  except BaseException:
    os.replace(os.path.join(trash, base), target)
    raise
  finally:
    shutil.rmtree(trash, ignore_errors=True)


def write_canonical(data: InteractionData, out_dir: str) -> dict[str, str]:
  """Write interactions.csv, items.csv, users.csv (when there are users) and meta.json.

  Files go to a temporary sibling directory that is renamed into place, so `out_dir` is
  either complete or untouched. An `out_dir` with the same content is reused; one with
  different content is replaced. Returns {"interactions": path, "items": path,
  ["users": path,] "meta": path, "dir": out_dir} (absolute paths).
  """
  validate(data)
  out_dir = os.path.abspath(out_dir)
  parent, base = os.path.split(out_dir)
  os.makedirs(parent, exist_ok=True)
  tmp = tempfile.mkdtemp(prefix=f".{base}.tmp-", dir=parent)
  os.chmod(tmp, 0o755)  # mkdtemp makes it private; the renamed out_dir should not be
  try:
    meta = {"name": data.name, "schema_name": data.schema_name, "dtypes": {}}
    for table in _TABLES:
      df, path = getattr(data, table), os.path.join(tmp, f"{table}.csv")
      if df is None:
        continue
      meta["dtypes"][table] = {c: str(t) for c, t in df.dtypes.items()}
      _write_csv(df, path)
    with open(os.path.join(tmp, _META), "w") as f:
      json.dump(meta, f, indent=1, sort_keys=True)
    if os.path.isdir(out_dir) and _fingerprint(out_dir) == _fingerprint(tmp):
      shutil.rmtree(tmp)
      return _paths(out_dir, data)
    _swap_into_place(tmp, out_dir)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  return _paths(out_dir, data)


def read_canonical(directory: str) -> InteractionData:
  """Read what `write_canonical` wrote, with the same dtypes (ids stay strings: "007")."""
  meta_path = os.path.join(directory, _META)
  if not os.path.isfile(meta_path):
    raise DataError(f"{meta_path}: no such file, expected a directory written by write_canonical")
  with open(meta_path) as f:
    meta = json.load(f)
  tables, origins = {}, {}
  for table, dtypes in meta["dtypes"].items():
    path = os.path.join(directory, f"{table}.csv")
    # object columns are strings: read them as str so "007" and "NA" come back unchanged.
    dtype = {c: (str if t == "object" else t) for c, t in dtypes.items()}
    tables[table] = read_csv_table(path, dtype=dtype)
    origins[table] = Origin(path)
  return canonicalize(meta["name"], meta["schema_name"], tables["interactions"], tables["items"],
                      tables.get("users"), origins)
