"""A user's own interactions CSV (plus optional items and users CSVs) as canonical data.

The interactions file needs a header with at least user_id, item_id, timestamp (integer
seconds since the epoch); `hour`, `label`, `rating` are used when present and any other
column is kept as a context column. Without an items file, items are the distinct
item_ids with genres "unknown", title "" and year 0. An items file needs item_id
(genres, title, year optional); a users file needs user_id. Ids are read as strings.
"""

from __future__ import annotations

import pandas as pd

from recsys_tfx.schema.canonical import (UNKNOWN_GENRE, UNKNOWN_YEAR, IngestConfig,
                                         InteractionData, Origin, canonicalize, read_csv_table)


def read_interactions_csv(path: str, items_path: str | None = None,
                          users_path: str | None = None,
                          ingest: IngestConfig | None = None) -> InteractionData:
  ids = {"user_id": str, "item_id": str}
  interactions = read_csv_table(path, dtype=ids)
  origins = {"interactions": Origin(path)}
  if items_path is None:
    if "item_id" in interactions.columns:  # (a missing column is reported by canonicalize)
      # stripped as canonicalize strips the interactions' ids (" i1" is "i1")
      item_ids = pd.unique(interactions["item_id"].astype(str).str.strip())
    else:
      item_ids = []
    items = pd.DataFrame({"item_id": item_ids, "genres": UNKNOWN_GENRE, "title": "",
                          "year": UNKNOWN_YEAR})
  else:
    items = read_csv_table(items_path, dtype={"item_id": str, "genres": str, "title": str})
    origins["items"] = Origin(items_path)
  users = None
  if users_path is not None:
    users = read_csv_table(users_path, dtype={"user_id": str})
    origins["users"] = Origin(users_path)
  return canonicalize("csv", "interactions", interactions, items, users, origins, ingest)
