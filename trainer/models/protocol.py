"""What every model in trainer/models/ shares: the split it learns from and the
interface it is trained and scored through.

Split: the pipeline's own leave-last-out rule (schema/time_split.py `assign_splits`, same
seed and tie-break), as integer indices, so a model fitted here (by the pipeline's
Trainer or the leaderboard) and a pipeline run agree on which interaction each user
holds out. Histories given to a model at scoring time never contain it.
"""
from __future__ import annotations

import abc
import dataclasses
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from recsys_tfx.schema.canonical import InteractionData
from recsys_tfx.schema.time_split import MIN_INTERACTIONS_TO_HOLD_OUT, assign_splits

NOT_CONTEXT = ("user_id", "item_id", "timestamp", "label", "rating")  # the rest is context


@dataclasses.dataclass
class Split:
  """Interactions as integer indices. Items index the whole catalogue (items.csv), so an
  item with no fit interactions still has an index (and can be a held-out target)."""

  user_ids: np.ndarray  # index -> raw user id (object)
  item_ids: np.ndarray  # index -> raw item id (object)
  fit_users: np.ndarray  # int64 [n_fit], time-ordered within each user
  fit_items: np.ndarray  # int64 [n_fit]
  fit_times: np.ndarray  # int64 [n_fit] epoch seconds
  fit_context: pd.DataFrame  # the fit rows' context columns (hour, device, ...), same order
  sequences: List[np.ndarray]  # per user index: fit item indices in time order
  test_users: np.ndarray  # int64 [n_test]: users with a held-out interaction
  test_items: np.ndarray  # int64 [n_test]: the held-out item
  test_context: pd.DataFrame  # the held-out rows' context columns (hour, device, ...)
  items: pd.DataFrame  # catalogue features, row i = item index i
  users: pd.DataFrame | None  # user features, row i = user index i (None if the source has none)

  @property
  def n_users(self) -> int:
    return len(self.user_ids)

  @property
  def n_items(self) -> int:
    return len(self.item_ids)

  def histories(self, users: np.ndarray) -> List[np.ndarray]:
    """Each user's fit items in time order (the held-out item is never among them)."""
    return [self.sequences[u] for u in users]


UNKNOWN = "<unknown>"  # the out-of-vocabulary entry when a split is indexed by vocabularies


def make_split(data: InteractionData, seed: int = 0,
               min_to_hold_out: int = MIN_INTERACTIONS_TO_HOLD_OUT,
               fit_splits: Sequence[str] = ("train", "eval"),
               vocabularies: Optional[Tuple[Sequence[str], Sequence[str]]] = None) -> Split:
  """The pipeline's per-user time split of `data`, as indices.

  `fit_splits`: which of the pipeline's splits the models learn from (the TFX Trainer
  uses ("train",); the leaderboard everything but the held-out `test`).
  `vocabularies`: (user ids, item ids) to index by (Transform's vocabularies), each
  followed by one UNKNOWN index that every id outside it maps to. By default users are
  indexed in sorted order and items in catalogue (items.csv) order."""
  items = data.items.reset_index(drop=True)
  frame = data.interactions.astype({"user_id": str, "item_id": str})
  if vocabularies is None:
    user_ids = np.array(sorted(frame["user_id"].unique()), dtype=object)
    item_ids = items["item_id"].astype(str).to_numpy(dtype=object)
  else:
    user_ids = np.array(list(vocabularies[0]) + [UNKNOWN], dtype=object)
    item_ids = np.array(list(vocabularies[1]) + [UNKNOWN], dtype=object)
    items = (items.astype({"item_id": str}).drop_duplicates("item_id").set_index("item_id")
             .reindex(item_ids).reset_index())
  item_index = _Index(item_ids, vocabularies is not None)
  user_index = _Index(user_ids, vocabularies is not None)

  fit_rows, test_rows = [], []
  records = frame.to_dict("records")
  by_user: Dict[str, list] = {}
  for row in records:
    by_user.setdefault(row["user_id"], []).append(row)
  for user in sorted(by_user):
    for split, row in assign_splits(by_user[user], seed, min_to_hold_out):
      if split == "test":
        test_rows.append(row)
      elif split in fit_splits:
        fit_rows.append(row)

  fit = pd.DataFrame(fit_rows, columns=frame.columns)
  test = pd.DataFrame(test_rows, columns=frame.columns)
  fit_users = fit["user_id"].map(user_index).to_numpy(np.int64)
  fit_items = fit["item_id"].map(item_index).to_numpy(np.int64)
  boundaries = np.flatnonzero(np.diff(fit_users)) + 1
  sequences = [np.empty(0, np.int64)] * len(user_ids)
  for chunk in np.split(np.arange(len(fit)), boundaries):
    if len(chunk):
      sequences[fit_users[chunk[0]]] = fit_items[chunk]
  users = None
  if data.users is not None:
    users = (data.users.astype({"user_id": str}).set_index("user_id")
             .reindex(user_ids).reset_index())
  context = [c for c in frame.columns if c not in NOT_CONTEXT]
  return Split(
      user_ids=user_ids, item_ids=item_ids,
      fit_users=fit_users, fit_items=fit_items,
      fit_times=fit["timestamp"].to_numpy(np.int64),
      fit_context=fit[context].reset_index(drop=True), sequences=sequences,
      test_users=test["user_id"].map(user_index).to_numpy(np.int64),
      test_items=test["item_id"].map(item_index).to_numpy(np.int64),
      test_context=test[context].reset_index(drop=True), items=items, users=users)


class _Index:
  """id -> index; with `unknown_last`, ids not in `ids` map to the last index."""

  def __init__(self, ids: np.ndarray, unknown_last: bool):
    self._index = {value: i for i, value in enumerate(ids)}
    self._default = len(ids) - 1 if unknown_last else None

  def __call__(self, value: str) -> int:
    return self._index.get(value, self._default)


class Recommender(abc.ABC):
  """A model fitted on a Split (by the pipeline's Trainer or the leaderboard); `score`
  returns a score for every catalogue item."""

  name: str = "?"

  @abc.abstractmethod
  def fit(self, split: Split, seed: int = 0) -> None:
    """Learn from split.fit_* / split.sequences (and item/user features if it uses them)."""

  @abc.abstractmethod
  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    """float32 [len(rows), n_items] for the held-out rows `rows` (indices into
    split.test_users / test_items / test_context); higher is better. A model must not
    read split.test_items."""

  @abc.abstractmethod
  def num_parameters(self) -> int:
    """Learned (or stored) numbers the model needs to score, for the leaderboard."""
