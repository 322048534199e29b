"""Chooses the primary retrieval model of a run by evidence: every model of
trainer.models, trained on the train split, ranks each user's held-out eval interaction
against the whole catalogue minus the user's train items (trainer/metrics.py), and the
best NDCG@10 wins (HR@10 breaks a tie, then config order).

The eval split is not the test split: TFMA validates the winner on test afterwards, so
the choice never sees the figures that judge it.
"""
import json
import os
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf

from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import metrics

KS = (10, 50)


def catalogue_rows(item_vocabulary: Sequence[str], catalogue_ids: Sequence[str]) -> np.ndarray:
  """int64 [vocabulary size + 1]: each item vocabulary index's catalogue row, -1 for ids
  outside the catalogue and for the out-of-vocabulary index (the last)."""
  row_of = {item: row for row, item in enumerate(catalogue_ids)}
  return np.array([row_of.get(item, -1) for item in item_vocabulary] + [-1], np.int64)


def seen_rows(user_index: np.ndarray, item_index: np.ndarray,
              rows_of_items: np.ndarray) -> Dict[int, set]:
  """user vocabulary index -> the catalogue rows of the user's train items."""
  seen: Dict[int, set] = {}
  for user, row in zip(user_index.tolist(), rows_of_items[item_index].tolist()):
    if row >= 0:
      seen.setdefault(user, set()).add(row)
  return seen


def evaluate(towers, item_table: np.ndarray, eval_batches, rows_of_items: np.ndarray,
             seen: Dict[int, set]) -> Dict[str, float]:
  """Full-catalogue HR/NDCG@K of one model on the eval split (Transform's batches)."""
  ranks: List[np.ndarray] = []
  for batch in eval_batches:
    targets = rows_of_items[batch[feats.ITEM_ID].numpy()]
    keep = targets >= 0  # held-out items outside the catalogue cannot be ranked
    if not keep.any():
      continue
    query = towers.query_tower(batch, training=False).numpy()[keep]
    users = batch[feats.USER_ID].numpy()[keep]
    scores = query @ item_table.T
    ranks.append(metrics.rank_of_target(scores, targets[keep],
                                        [seen.get(int(u), set()) for u in users]))
  all_ranks = np.concatenate(ranks) if ranks else np.zeros(0, np.int64)
  return {"users": int(len(all_ranks)), **metrics.summarize(all_ranks, KS)}


def choose(results: Dict[str, Dict[str, float]], order: Sequence[str]) -> str:
  """The model with the best NDCG@10 (then HR@10, then the earlier in `order`)."""
  return max(order, key=lambda name: (results[name]["ndcg@10"], results[name]["hit_rate@10"],
                                      -order.index(name)))


def item_table(towers, catalogue_features: Dict[str, tf.Tensor]) -> np.ndarray:
  """float32 [catalogue, D]: the candidate tower over every catalogue item."""
  return towers.candidate_tower(catalogue_features, training=False).numpy()


def write(serving_model_dir: str, chosen: str, results: Dict[str, Dict[str, object]]) -> str:
  """The choice and every candidate's eval-split figures, beside the SavedModel
  (assets.extra/selection.json), where the RetrievalEvaluator reads them into MLMD."""
  path = os.path.join(serving_model_dir, contract.SELECTION_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    json.dump({"chosen": chosen, "candidates": results}, f, indent=2, default=list)
  return path


def read(serving_model_dir: str) -> Dict[str, object]:
  """What write() wrote; {} for a model exported without it."""
  path = os.path.join(serving_model_dir, contract.SELECTION_FILE)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    return json.load(f)
