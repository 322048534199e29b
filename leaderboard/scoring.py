"""Scores a fitted model on a split's held-out rows under both protocols, with the one
metrics module (trainer/metrics.py: 0-based ranks, ties count against the model).

  full catalogue  the held-out item's rank among every catalogue item the user has not
                  interacted with in the fit data;
  sampled         its rank among SAMPLED_NEGATIVES items drawn uniformly, once per user
                  from a fixed seed, from items the user never interacted with; the same
                  negatives for every model. Labelled "sampled": it inflates scores and
                  can reorder models (Krichene & Rendle, 2020).
"""
import dataclasses

import numpy as np

from recsys_tfx.trainer import metrics
from recsys_tfx.trainer.models.protocol import Recommender, Split

K = 10


@dataclasses.dataclass
class Ranks:
  full: np.ndarray  # 0-based rank among unseen catalogue items, per held-out row
  sampled: np.ndarray  # 0-based rank among the item + SAMPLED_NEGATIVES negatives


def sampled_negatives(split: Split, seed: int = 0) -> np.ndarray:
  """int64 [n_test, SAMPLED_NEGATIVES]: per held-out row, items the user never touched."""
  rng = np.random.default_rng(seed)
  out = np.empty((len(split.test_users), metrics.SAMPLED_NEGATIVES), np.int64)
  for row, (user, target) in enumerate(zip(split.test_users, split.test_items)):
    touched = set(split.sequences[user].tolist()) | {int(target)}
    if split.n_items - len(touched) < metrics.SAMPLED_NEGATIVES:
      raise ValueError(f"user {split.user_ids[user]} has touched all but "
                       f"{split.n_items - len(touched)} of {split.n_items} items; the sampled "
                       f"protocol needs {metrics.SAMPLED_NEGATIVES} untouched ones")
    out[row] = metrics.sampled_negatives(split.n_items, touched, rng)
  return out


def rank_rows(split: Split, model: Recommender, negatives: np.ndarray,
              batch_size: int = 256) -> Ranks:
  """Scores every held-out row in batches and ranks its item under both protocols."""
  full, sampled = [], []
  for start in range(0, len(split.test_users), batch_size):
    rows = np.arange(start, min(start + batch_size, len(split.test_users)))
    scores = np.asarray(model.score(split, rows), dtype=np.float32)
    expected = (len(rows), split.n_items)
    if scores.shape != expected:
      raise ValueError(f"{model.name}.score returned shape {scores.shape}, expected {expected}")
    targets = split.test_items[rows]
    full.append(metrics.rank_of_target(
        scores, targets, [split.sequences[user] for user in split.test_users[rows]]))
    lists = np.concatenate([targets[:, None], negatives[rows]], axis=1)
    sampled.append(metrics.rank_in_list(np.take_along_axis(scores, lists, axis=1)))
  empty = np.zeros(0, np.int64)
  return Ranks(np.concatenate(full) if full else empty,
               np.concatenate(sampled) if sampled else empty)
