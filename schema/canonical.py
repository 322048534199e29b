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
(1-based, the header is line 1) or field, and what was expected; values are quoted cut
to a readable length (`quote`).

What is plausible is set by `IngestConfig` (the `ingest:` section of a run's config):
timestamps must fall within min_year..max_year (default 1970..2100: a value of
99999999999999999999 once wrapped to -2^63 and reordered the time split), ids are
stripped of surrounding spaces (" u1" and "u1" are one user) and at most max_id_length
characters, and exact duplicate rows of interactions are dropped and counted
(`InteractionData.duplicates_dropped`) or refused.
"""

from __future__ import annotations

import calendar
import codecs
import dataclasses
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


DUPLICATE_POLICIES = ("drop", "refuse")


@dataclass(frozen=True)
class IngestConfig:
  """What input is plausible (the `ingest:` section of a run's config)."""

  min_year: int = 1970  # timestamps from the start of this year (UTC) ...
  max_year: int = 2100  # ... to the end of this one
  duplicates: str = "drop"  # exact duplicate interaction rows: drop (and count) | refuse
  max_id_length: int = 256  # characters of a user or item id, after stripping spaces

  def problems(self) -> list[str]:
    checks = [
        (1 <= self.min_year <= self.max_year <= 9999,
         f"ingest.min_year..max_year must be years with 1 <= min_year <= max_year <= 9999, "
         f"got {self.min_year}..{self.max_year}"),
        (self.duplicates in DUPLICATE_POLICIES,
         f"ingest.duplicates must be one of {', '.join(DUPLICATE_POLICIES)}, "
         f"got {self.duplicates!r}"),
        (isinstance(self.max_id_length, int) and self.max_id_length >= 1,
         f"ingest.max_id_length must be an integer >= 1, got {self.max_id_length!r}"),
    ]
    return [message for ok, message in checks if not ok]

  @property
  def min_timestamp(self) -> int:
    return calendar.timegm((self.min_year, 1, 1, 0, 0, 0))

  @property
  def max_timestamp(self) -> int:
    return calendar.timegm((self.max_year + 1, 1, 1, 0, 0, 0)) - 1


@dataclass
class InteractionData:
  name: str  # e.g. "synthetic", "movielens-latest-small", "movielens-100k", "csv"
  schema_name: str  # curated schema: "synthetic", "movielens", "movielens_users", "interactions"
  interactions: pd.DataFrame
  items: pd.DataFrame
  users: pd.DataFrame | None = None
  duplicates_dropped: int = 0  # exact duplicate interaction rows dropped on reading


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


def parse_genres(text) -> tuple[str, ...]:
  """"Action|Comedy" -> ("Action", "Comedy"), in the order the source lists them (the
  first is the primary genre, the one the serving rules cap); UNKNOWN_GENRE -> ()."""
  tokens = [t.strip() for t in str(text or "").split("|")]
  return tuple(t for t in tokens if t and t != UNKNOWN_GENRE)


def newest_year(years) -> int | None:
  """The catalogue's newest release year, whose items the serving rules call fresh
  (UNKNOWN_YEAR ignored); None when no year is known."""
  known = [int(y) for y in years if int(y) != UNKNOWN_YEAR]
  return max(known) if known else None


def hour_of_day(timestamps) -> np.ndarray:
  """UTC hour (0..23) of epoch seconds."""
  return (np.asarray(timestamps, dtype=np.int64) // 3600) % 24


QUOTE_LIMIT = 60  # characters of a value an error message shows


def quote(value, limit: int = QUOTE_LIMIT) -> str:
  """repr(value), cut to about `limit` characters with its full length said, so that an
  error about a 10 MB field is one readable line."""
  text = value if isinstance(value, str) else str(value)
  if len(text) <= limit:
    return repr(value)
  return f"{text[:limit]!r}... ({len(text):,} characters)"


def cut(text: str, limit: int = QUOTE_LIMIT) -> str:
  """text as it is when short, else its first `limit` characters and its length."""
  return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


# ---------------------------------------------------------------------------------------
# Coercion: raw frames (often all strings) -> canonical dtypes, with line-accurate errors.


def _fail(origin: Origin, row: int, col: str, expected: str, got) -> DataError:
  return DataError(f"{origin.where(row)}: field '{col}': expected {expected}, got {quote(got)}")


def _first(mask) -> int:
  return int(np.argmax(np.asarray(mask)))


def _require(df: pd.DataFrame, columns, origin: Origin) -> None:
  for col in columns:
    if col not in df.columns:
      found = ", ".join(cut(str(c), 40) for c in list(df.columns)[:10]) or "none"
      more = f" and {len(df.columns) - 10:,} more" if len(df.columns) > 10 else ""
      raise DataError(f"{origin.path}: missing required column '{col}' (found: {found}{more})")


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


def _ids(s: pd.Series, origin: Origin, max_length: int) -> pd.Series:
  """Id strings stripped of surrounding spaces (" u1" is "u1"), non-empty and at most
  max_length characters. Checked on the distinct values: far fewer than the rows."""
  s = _strings(s, origin, allow_empty=False)
  distinct = pd.Series(pd.unique(s), dtype=object)
  stripped = distinct.str.strip()
  changed = (stripped != distinct).to_numpy()
  if changed.any():
    s = s.map(dict(zip(distinct[changed], stripped[changed]))).fillna(s).astype(object)
    distinct = pd.Series(pd.unique(stripped), dtype=object)
  too_long = distinct[(distinct.str.len() > max_length).to_numpy()]
  if len(too_long):
    row = _first(s.isin(too_long).to_numpy())
    raise _fail(origin, row, s.name, f"an id of at most {max_length} characters "
                f"(ingest.max_id_length)", s.iloc[row])
  return s


def _integers(s: pd.Series, origin: Origin, expected: str,
              bounds: tuple[int, int] | None = None, hint=None) -> pd.Series:
  """Integers, refused (naming the line and the value as written) when not whole numbers
  or, with bounds, outside them: checked before the cast to int64, which would wrap a
  value like 99999999999999999999 silently."""
  num = s if pd.api.types.is_integer_dtype(s.dtype) else pd.to_numeric(s, errors="coerce")
  values = num.to_numpy(dtype=np.float64, na_value=np.nan)  # for the checks only
  if pd.api.types.is_integer_dtype(num.dtype):
    ok = num.to_numpy() <= np.iinfo(np.int64).max if num.dtype == np.uint64 \
        else np.ones(len(num), bool)
  else:  # floats: also catches "1.5", "inf" and what does not fit an int64
    ok = (np.isfinite(values) & (values == np.floor(values))
          & (values >= -2.0 ** 63) & (values < 2.0 ** 63))
  if bounds is not None:
    low, high = bounds
    ok &= (values >= low) & (values <= high)
  if not ok.all():
    row = _first(~ok)
    message = _fail(origin, row, s.name, expected, s.iloc[row])
    extra = hint(float(values[row])) if hint is not None and np.isfinite(values[row]) else ""
    raise DataError(f"{message}{extra}")
  if pd.api.types.is_integer_dtype(num.dtype):
    return num.astype(np.int64)
  return pd.Series(values.astype(np.int64), index=s.index, name=s.name)


def _timestamps(s: pd.Series, origin: Origin, ingest: IngestConfig) -> pd.Series:
  low, high = ingest.min_timestamp, ingest.max_timestamp

  def hint(value: float) -> str:
    for unit, factor in (("milliseconds", 1e3), ("microseconds", 1e6), ("nanoseconds", 1e9)):
      if low <= value / factor <= high:
        return f" (it looks like {unit}; timestamps are seconds)"
    return ""

  return _integers(s, origin, f"seconds since the epoch from {ingest.min_year}-01-01 to "
                   f"{ingest.max_year}-12-31 (ingest.min_year..max_year)", (low, high), hint)


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


def _canonical_interactions(df: pd.DataFrame, origin: Origin,
                            ingest: IngestConfig) -> pd.DataFrame:
  df = df.reset_index(drop=True).copy()
  df.columns = [str(c).strip() for c in df.columns]
  _require(df, ("user_id", "item_id", "timestamp"), origin)
  for col in ("user_id", "item_id"):
    df[col] = _ids(df[col], origin, ingest.max_id_length)
  df["timestamp"] = _timestamps(df["timestamp"], origin, ingest)
  if "hour" not in df.columns:
    df["hour"] = hour_of_day(df["timestamp"].to_numpy())
  if "label" not in df.columns:
    df["label"] = np.float32(1.0)
  df = _coerce_features(df, origin)
  front = list(INTERACTION_COLUMNS) + (["rating"] if "rating" in df.columns else [])
  return df[front + [c for c in df.columns if c not in front]]


def _canonical_items(df: pd.DataFrame, origin: Origin, ingest: IngestConfig) -> pd.DataFrame:
  df = df.reset_index(drop=True).copy()
  df.columns = [str(c).strip() for c in df.columns]
  _require(df, ("item_id",), origin)
  df["item_id"] = _ids(df["item_id"], origin, ingest.max_id_length)
  defaults = {"genres": UNKNOWN_GENRE, "title": "", "year": UNKNOWN_YEAR}
  for col, default in defaults.items():
    if col not in df.columns:
      df[col] = default
  df["genres"] = df["genres"].fillna("").astype(str).str.strip().replace("", UNKNOWN_GENRE)
  df["title"] = df["title"].fillna("")
  df["year"] = df["year"].replace("", UNKNOWN_YEAR).fillna(UNKNOWN_YEAR)
  df = _coerce_features(df, origin)
  return df[list(ITEM_COLUMNS) + [c for c in df.columns if c not in ITEM_COLUMNS]]


def _canonical_users(df: pd.DataFrame, origin: Origin, ingest: IngestConfig) -> pd.DataFrame:
  df = df.reset_index(drop=True).copy()
  df.columns = [str(c).strip() for c in df.columns]
  _require(df, ("user_id",), origin)
  df["user_id"] = _ids(df["user_id"], origin, ingest.max_id_length)
  df = _coerce_features(df, origin)
  return df[["user_id"] + [c for c in df.columns if c != "user_id"]]


def canonicalize(
    name: str,
    schema_name: str,
    interactions: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame | None = None,
    origins: Mapping[str, Origin] | None = None,
    ingest: IngestConfig | None = None,
) -> InteractionData:
  """Coerce raw tables to the canonical columns and dtypes, fill defaults, validate, then
  drop (and count) or refuse exact duplicate interactions, as `ingest` says.

  Rows must still be in file order so errors can name the line (see `Origin`).
  `origins` maps "interactions" / "items" / "users" to where each table was read from.
  """
  ingest = ingest or IngestConfig()
  where = _origins(name, origins)
  data = InteractionData(
      name=name,
      schema_name=schema_name,
      interactions=_canonical_interactions(interactions, where["interactions"], ingest),
      items=_canonical_items(items, where["items"], ingest),
      users=None if users is None else _canonical_users(users, where["users"], ingest),
  )
  validate(data, origins)
  # Last: dropping rows shifts the row -> line mapping the checks above report with.
  data.interactions, data.duplicates_dropped = _without_duplicates(
      data.interactions, where["interactions"], ingest.duplicates)
  return data


def _without_duplicates(df: pd.DataFrame, origin: Origin,
                        policy: str) -> tuple[pd.DataFrame, int]:
  """Exact duplicate rows (every column equal) dropped, keeping the first; or refused."""
  duplicate = df.duplicated(keep="first").to_numpy()
  count = int(duplicate.sum())
  if not count:
    return df, 0
  if policy == "refuse":
    row = _first(duplicate)
    original = _first((df == df.iloc[row]).all(axis=1).to_numpy())
    first = origin.where(original).replace(f"{origin.path} ", "")
    raise DataError(
        f"{origin.where(row)}: an exact duplicate of {first} (user_id "
        f"{quote(df['user_id'].iloc[row])}, item_id {quote(df['item_id'].iloc[row])}, "
        f"timestamp {df['timestamp'].iloc[row]}); {count:,} duplicate row(s) in all. "
        f"ingest.duplicates is 'refuse'; 'drop' drops them and counts them in the summary")
  return df[~duplicate].reset_index(drop=True), count


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
                    f"{quote(df[col].iloc[row])} appears twice")


def _check_known(df: pd.DataFrame, col: str, known: pd.Series, origin: Origin,
                 table: Origin) -> None:
  unknown = ~df[col].isin(known).to_numpy()
  if unknown.any():
    row = _first(unknown)
    raise DataError(f"{origin.where(row)}: field '{col}': {quote(df[col].iloc[row])} "
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


def decode_error(path: str, encoding: str) -> DataError:
  """Where the first byte of the file that is not valid `encoding` text is: its line and
  its offset in the file and in the line. (The exception of a decoder that read the file
  in chunks gives an offset within one chunk: "at byte 1" for a byte at offset 37.)"""
  decoder = codecs.getincrementaldecoder(encoding)()
  offset = 0
  with open(path, "rb") as f:
    for number, line in enumerate(f, start=1):
      try:
        decoder.decode(line)
      except UnicodeDecodeError as e:  # lines end with b"\n": nothing is pending across them
        return DataError(
            f"{path} line {number}: not valid {encoding} text: byte {e.start + 1} of the line "
            f"(offset {offset + e.start} in the file) is {line[e.start:e.start + 1]!r} "
            f"({e.reason}); save the file as {encoding}")
      offset += len(line)
  try:
    decoder.decode(b"", final=True)
  except UnicodeDecodeError as e:
    return DataError(f"{path}: not valid {encoding} text: the file ends inside a character "
                     f"(offset {offset - 1}: {e.reason})")
  return DataError(f"{path}: not valid {encoding} text")


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
      raise DataError(f"{path}: not a valid CSV file ({quote(str(e).strip(), 200)})") from e
    expected, line, got = m.groups()
    raise DataError(f"{path} line {line}: expected {expected} comma-separated fields like the "
                    f"header (quote fields that contain commas), got {got}") from e
  except UnicodeDecodeError as e:
    raise decode_error(path, encoding) from e
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


def write_canonical(data: InteractionData, out_dir: str,
                    ingest: IngestConfig | None = None) -> dict[str, str]:
  """Write interactions.csv, items.csv, users.csv (when there are users) and meta.json
  (with the `ingest` limits the data was read with, which read_canonical applies again).

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
    meta = {"name": data.name, "schema_name": data.schema_name, "dtypes": {},
            "ingest": dataclasses.asdict(ingest or IngestConfig())}
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
                      tables.get("users"), origins, IngestConfig(**meta.get("ingest", {})))
