"""One string names a data source; `load_source` turns it into canonical InteractionData.

  synthetic                the synthetic world at its demo size (or `synthetic_interactions`)
  synthetic:<n>            the synthetic world with about n interactions, e.g. synthetic:5000000
  movielens:<dir>          a MovieLens 100K / 1M / latest directory
  csv:<file>               an interactions CSV (user_id,item_id,timestamp,...)
  csv:<dir>                a directory with interactions.csv [+ items.csv, users.csv]
  spans:<pattern>          dated spans, e.g. spans:/data/input/{YYYY}-{MM}-{DD}: each a file
                           or directory as csv: or movielens: read it; a run reads the ones
                           components/ingest/spans.py picks (load_spans)
"""

from __future__ import annotations

import os
from typing import List

import pandas as pd

from recsys_tfx.components.ingest import spans as spans_lib
from recsys_tfx.components.ingest import synthetic
from recsys_tfx.components.ingest.csv_source import read_interactions_csv
from recsys_tfx.schema.canonical import (DataError, IngestConfig, InteractionData, Origin,
                                         canonicalize)
from recsys_tfx.components.ingest.movielens import LAYOUTS, read_movielens

SCHEMES = ("synthetic", "synthetic:<n_interactions>", "movielens:<dir>", "csv:<file or dir>",
           "spans:<pattern with {SPAN} or {YYYY}{MM}{DD}>")


def _csv(path: str, ingest: IngestConfig | None) -> InteractionData:
  if not os.path.isdir(path):
    return read_interactions_csv(path, ingest=ingest)
  side = {t: os.path.join(path, f"{t}.csv") for t in ("items", "users")}
  return read_interactions_csv(os.path.join(path, "interactions.csv"),
                               *(p if os.path.isfile(p) else None for p in side.values()),
                               ingest=ingest)


def load_source(spec: str, *, synthetic_interactions: int | None = None,
                seed: int = 0, ingest: IngestConfig | None = None) -> InteractionData:
  """Load the data source `spec` names (see the module docstring). `seed` and
  `synthetic_interactions` apply to the synthetic world only; a count in the spec wins.
  `ingest` sets what input is plausible (timestamps, ids, duplicates) for files read."""
  scheme, _, arg = spec.partition(":")
  if scheme == "synthetic":
    if arg:
      try:
        synthetic_interactions = int(arg.replace("_", ""))
      except ValueError:
        raise DataError(f"data source {spec!r}: expected synthetic:<n_interactions> with an "
                        f"integer, got {arg!r}") from None
    if synthetic_interactions is None:
      return synthetic.generate(seed=seed)
    try:
      return synthetic.generate_by_size(synthetic_interactions, seed=seed)
    except ValueError as e:
      raise DataError(f"data source {spec!r}: {e}") from None
  if scheme in ("movielens", "csv") and arg:
    return read_movielens(arg, ingest) if scheme == "movielens" else _csv(arg, ingest)
  if scheme == spans_lib.SCHEME:
    raise DataError(f"data source {spec!r}: spans are resolved first (spans.resolve), "
                    f"then read with load_spans")
  raise DataError(f"unknown data source {spec!r}: expected one of {', '.join(SCHEMES)}")


def load_span(path: str, ingest: IngestConfig | None = None) -> InteractionData:
  """One span: a MovieLens dump (a directory with its marker file) or csv: data."""
  if os.path.isdir(path) and any(os.path.isfile(os.path.join(path, m)) for m in LAYOUTS):
    return read_movielens(path, ingest)
  return _csv(path, ingest)


def load_spans(spans: List[spans_lib.Span], ingest: IngestConfig | None = None,
               pattern: str = "") -> InteractionData:
  """The spans' interactions as one dataset; an item's or user's row from the newest span
  that has it; a row repeated across spans counted as a duplicate (ingest.duplicates)."""
  parts = []
  for span in spans:
    data = load_span(span.path, ingest)
    if parts and data.schema_name != parts[0][1].schema_name:
      raise DataError(f"{span.path}: span {span.number} is {data.name} data (schema "
                      f"{data.schema_name}), but span {parts[0][0].number} "
                      f"({parts[0][0].path}) is {parts[0][1].schema_name}: every span of "
                      f"{pattern or 'the pattern'} must be the same kind of data")
    parts.append((span, data))
  first = parts[0][1]

  def newest_rows(table: str, key: str):
    frames = [getattr(d, table) for _, d in parts if getattr(d, table) is not None]
    if not frames:
      return None
    return pd.concat(frames, ignore_index=True).drop_duplicates(key, keep="last")

  where = f"spans {','.join(str(s.number) for s, _ in parts)} of {pattern or 'the pattern'}"
  combined = canonicalize(
      first.name, first.schema_name,
      pd.concat([d.interactions for _, d in parts], ignore_index=True),
      newest_rows("items", "item_id").reset_index(drop=True),
      None if first.users is None else newest_rows("users", "user_id").reset_index(drop=True),
      {t: Origin(f"{where} ({t})", first_line=None) for t in ("interactions", "items", "users")},
      ingest)
  combined.duplicates_dropped += sum(d.duplicates_dropped for _, d in parts)
  return combined
