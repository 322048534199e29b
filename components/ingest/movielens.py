"""Readers for the three MovieLens layouts, detected by which files a directory holds.

  100K    u.data (user<TAB>item<TAB>rating<TAB>timestamp), u.item (latin-1, '|'-separated,
          19 genre flags), u.user (id|age|gender|occupation|zip)  -> "movielens-100k"
  1M      ratings.dat, movies.dat (latin-1), users.dat, all '::'-separated  -> "movielens-1m"
  latest  ratings.csv, movies.csv with headers, no users  -> "movielens-latest[-small]"

Every rating is kept as an implicit positive (label 1.0) with its `rating`; `hour` is the
UTC hour of the timestamp. Items: `genres` pipe-separated ("unknown" for "(no genres
listed)" or no flags), `title` as in the file, `year` from the "(1995)" that ends the
title (0 when there is none). The users table (100K, 1M) keeps user_id, age (1M: the
bucket code, e.g. 18 = "18-24"), gender and occupation (1M codes mapped to their names).
"""

from __future__ import annotations

import os
import re

import numpy as np
import pandas as pd

from recsys_tfx.schema.canonical import (UNKNOWN_GENRE, UNKNOWN_YEAR, DataError, IngestConfig,
                                         InteractionData, Origin, canonicalize, decode_error,
                                         quote, read_csv_table)

GENRES_100K = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western")

OCCUPATIONS_1M = ("other", "academic/educator", "artist", "clerical/admin",
                  "college/grad student", "customer service", "doctor/health care",
                  "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer",
                  "programmer", "retired", "sales/marketing", "scientist", "self-employed",
                  "technician/engineer", "tradesman/craftsman", "unemployed", "writer")

# Marker file of each layout, in detection order.
LAYOUTS = {"u.data": "100k", "ratings.dat": "1m", "ratings.csv": "latest"}

_YEAR = re.compile(r"\((\d{4})(?:[-–]\d{0,4})?\)\s*$")


def parse_year(titles: pd.Series) -> pd.Series:
  """Year from a title ending in "(1995)" (or "(2006-2007)"); 0 when there is none."""
  year = titles.str.extract(_YEAR, expand=False)
  return year.fillna(UNKNOWN_YEAR).astype(np.int64)


def read_fields(path: str, sep: str, names: tuple[str, ...],
                encoding: str = "utf-8") -> pd.DataFrame:
  """Split a header-less file into string columns; row i of the frame is file line i + 1."""
  if not os.path.isfile(path):
    raise DataError(f"{path}: no such file")
  try:
    with open(path, encoding=encoding, newline="") as f:
      lines = f.read().split("\n")
  except UnicodeDecodeError:
    raise decode_error(path, encoding) from None
  while lines and not lines[-1].strip():  # trailing blank lines
    lines.pop()
  if not lines:
    raise DataError(f"{path}: file is empty, expected lines of {sep.join(names)}")
  rows = [line.rstrip("\r").split(sep) for line in lines]
  for i, row in enumerate(rows):
    if len(row) != len(names):
      shown = "<TAB>" if sep == "\t" else sep
      raise DataError(f"{path} line {i + 1}: expected {len(names)} fields separated by "
                      f"{sep!r} ({shown.join(names)}), got {len(row)}")
  return pd.DataFrame(rows, columns=list(names))


def _check_columns(df: pd.DataFrame, path: str, expected: tuple[str, ...]) -> None:
  missing = [c for c in expected if c not in df.columns]
  if missing:
    raise DataError(f"{path} line 1: expected a header with columns {','.join(expected)}, "
                    f"got {quote(','.join(map(str, df.columns)), 200)} (missing "
                    f"{', '.join(missing)})")


def _ratings(df: pd.DataFrame) -> pd.DataFrame:
  return df.rename(columns={"UserID": "user_id", "MovieID": "item_id", "Rating": "rating",
                            "Timestamp": "timestamp", "userId": "user_id", "movieId": "item_id"})


def _genres(s: pd.Series) -> pd.Series:
  return s.str.strip().replace({"(no genres listed)": UNKNOWN_GENRE, "": UNKNOWN_GENRE})


def read_100k(directory: str, ingest: IngestConfig | None = None) -> InteractionData:
  data_path, item_path, user_path = (os.path.join(directory, f)
                                     for f in ("u.data", "u.item", "u.user"))
  ratings = _ratings(read_fields(data_path, "\t", ("UserID", "MovieID", "Rating", "Timestamp")))
  raw = read_fields(item_path, "|", ("MovieID", "Title", "ReleaseDate", "VideoReleaseDate", "URL")
                    + GENRES_100K, encoding="latin-1")
  flags = raw[list(GENRES_100K)]
  bad = ~flags.isin(["0", "1"]).all(axis=1).to_numpy()
  if bad.any():
    row = int(np.argmax(bad))
    raise DataError(f"{item_path} line {row + 1}: expected 19 genre flags of 0 or 1, "
                    f"got {quote('|'.join(flags.iloc[row]))}")
  names = np.array(GENRES_100K, dtype=object)
  genres = ["|".join(names[r == "1"]) for r in flags.to_numpy()]
  year = parse_year(raw["Title"])
  date_year = raw["ReleaseDate"].str[-4:].where(raw["ReleaseDate"].str[-4:].str.isdigit(), "0")
  items = pd.DataFrame({"item_id": raw["MovieID"],
                        "genres": _genres(pd.Series(genres, dtype=object)),
                        "title": raw["Title"],
                        "year": year.where(year > 0, date_year.astype(np.int64))})
  users, origins = None, {"interactions": Origin(data_path, 1), "items": Origin(item_path, 1)}
  if os.path.exists(user_path):
    raw = read_fields(user_path, "|", ("UserID", "Age", "Gender", "Occupation", "Zip"),
                      encoding="latin-1")
    users = pd.DataFrame({"user_id": raw["UserID"], "age": raw["Age"], "gender": raw["Gender"],
                          "occupation": raw["Occupation"]})
    origins["users"] = Origin(user_path, 1)
  schema = "movielens_users" if users is not None else "movielens"
  return canonicalize("movielens-100k", schema, ratings, items, users, origins, ingest)


def read_1m(directory: str, ingest: IngestConfig | None = None) -> InteractionData:
  data_path, item_path, user_path = (os.path.join(directory, f)
                                     for f in ("ratings.dat", "movies.dat", "users.dat"))
  ratings = _ratings(read_fields(data_path, "::", ("UserID", "MovieID", "Rating", "Timestamp")))
  raw = read_fields(item_path, "::", ("MovieID", "Title", "Genres"), encoding="latin-1")
  items = pd.DataFrame({"item_id": raw["MovieID"], "genres": _genres(raw["Genres"]),
                        "title": raw["Title"], "year": parse_year(raw["Title"])})
  users, origins = None, {"interactions": Origin(data_path, 1), "items": Origin(item_path, 1)}
  if os.path.exists(user_path):
    raw = read_fields(user_path, "::", ("UserID", "Gender", "Age", "Occupation", "Zip-code"),
                      encoding="latin-1")
    code = pd.to_numeric(raw["Occupation"], errors="coerce")
    bad = ~code.isin(range(len(OCCUPATIONS_1M))).to_numpy()
    if bad.any():
      row = int(np.argmax(bad))
      raise DataError(f"{user_path} line {row + 1}: field 'Occupation': expected a code "
                      f"0..{len(OCCUPATIONS_1M) - 1}, got {quote(raw['Occupation'].iloc[row])}")
    users = pd.DataFrame({"user_id": raw["UserID"], "age": raw["Age"], "gender": raw["Gender"],
                          "occupation": np.array(OCCUPATIONS_1M, dtype=object)[code.astype(int)]})
    origins["users"] = Origin(user_path, 1)
  schema = "movielens_users" if users is not None else "movielens"
  return canonicalize("movielens-1m", schema, ratings, items, users, origins, ingest)


def read_latest(directory: str, ingest: IngestConfig | None = None) -> InteractionData:
  data_path = os.path.join(directory, "ratings.csv")
  item_path = os.path.join(directory, "movies.csv")
  ratings = read_csv_table(data_path, dtype={"userId": str, "movieId": str})
  _check_columns(ratings, data_path, ("userId", "movieId", "rating", "timestamp"))
  movies = read_csv_table(item_path, dtype=str)
  _check_columns(movies, item_path, ("movieId", "title", "genres"))
  items = pd.DataFrame({"item_id": movies["movieId"], "genres": _genres(movies["genres"]),
                        "title": movies["title"], "year": parse_year(movies["title"])})
  small = "small" in os.path.basename(os.path.normpath(directory))
  name = "movielens-latest-small" if small else "movielens-latest"
  return canonicalize(name, "movielens", _ratings(ratings), items, None,
                      {"interactions": Origin(data_path), "items": Origin(item_path)}, ingest)


def detect_layout(directory: str) -> str:
  """"100k", "1m" or "latest", from the ratings file the directory holds."""
  if not os.path.exists(directory):
    raise DataError(f"{directory}: no such directory")
  if not os.path.isdir(directory):
    raise DataError(f"{directory}: not a directory, expected a MovieLens directory")
  for marker, layout in LAYOUTS.items():
    if os.path.isfile(os.path.join(directory, marker)):
      return layout
  raise DataError(f"{directory}: no MovieLens ratings file, expected one of "
                  f"{', '.join(LAYOUTS)} (100K, 1M, latest)")


def read_movielens(path: str, ingest: IngestConfig | None = None) -> InteractionData:
  """Read a MovieLens 100K, 1M or latest(-small) directory."""
  layout = detect_layout(path)
  return {"100k": read_100k, "1m": read_1m, "latest": read_latest}[layout](path, ingest)
