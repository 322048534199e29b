"""One string names a data source; `load_source` turns it into canonical InteractionData.

  synthetic                the synthetic world at its demo size (or `synthetic_interactions`)
  synthetic:<n>            the synthetic world with about n interactions, e.g. synthetic:5000000
  movielens:<dir>          a MovieLens 100K / 1M / latest directory
  csv:<file>               an interactions CSV (user_id,item_id,timestamp,...)
  csv:<dir>                a directory with interactions.csv [+ items.csv, users.csv]
"""

from __future__ import annotations

import os

from recsys_tfx.components.ingest import synthetic
from recsys_tfx.components.ingest.csv_source import read_interactions_csv
from recsys_tfx.schema.canonical import DataError, IngestConfig, InteractionData
from recsys_tfx.components.ingest.movielens import read_movielens

SCHEMES = ("synthetic", "synthetic:<n_interactions>", "movielens:<dir>", "csv:<file or dir>")


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
  raise DataError(f"unknown data source {spec!r}: expected one of {', '.join(SCHEMES)}")
