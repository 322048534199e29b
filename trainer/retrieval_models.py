"""Retrieval models besides the two-tower: mf, lightgcn, sasrec, bert4rec.

Each is trained by its leaderboard implementation (leaderboard/factorization.py,
leaderboard/sequential.py: one implementation per model, so the pipeline's model and the
leaderboard's row are the same thing) on the pipeline's train split, indexed by
Transform's vocabularies. The fitted model is then wrapped as a query tower and a
candidate tower over Transform's outputs, the interface trainer/export.py exports with a
ScaNN index, exactly as it exports the two-tower:

  mf, lightgcn      query = the user's embedding row, candidate = the item's row
                    (an unknown user gets the mean user row)
  sasrec, bert4rec  query = the encoder's state for the user's history window (Transform's
                    `history`, left-padded with -1), candidate = the item's row of the
                    shared item table; an empty history gets the popularity-weighted
                    mean item row, so a user with no history still gets popular items
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf

from leaderboard import protocol
# The models that read history, named once in the config module (it imports no TF).
from pipeline.configs import SEQUENTIAL_MODELS as SEQUENTIAL
from trainer import features as feats
from trainer.preprocessing import HISTORY_PAD


def model_class(name: str):
  """The leaderboard's class for `name` (leaderboard/run.py MODELS)."""
  import importlib
  from leaderboard.run import MODELS
  module, cls = MODELS[name]
  return getattr(importlib.import_module(module), cls)


def check_args(name: str, args: Dict[str, Any]) -> None:
  """Raises ValueError naming the keys `name`'s constructor does not take."""
  # max_len is trainer.history_length, the window Transform builds.
  accepted = set(inspect.signature(model_class(name)).parameters) - {"verbose", "max_len"}
  unknown = sorted(set(args) - accepted)
  if unknown:
    raise ValueError(f"trainer.model_args: {name} has no parameter(s) {unknown}; allowed: "
                     f"{sorted(accepted)}")


class _Rows(tf.Module):
  """features[key] (a vocabulary index) -> its row of a fixed table."""

  def __init__(self, table: np.ndarray, key: str, name: str):
    super().__init__(name=name)
    self.table = tf.Variable(table.astype(np.float32), trainable=False, name=f"{name}_table")
    self.key = key

  def __call__(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return tf.gather(self.table, features[self.key])


class _HistoryQuery(tf.Module):
  """features["history"] [batch, length] -> the encoder's query vector."""

  def __init__(self, encoder, empty_history_query: np.ndarray):
    super().__init__(name="history_query")
    self.encoder = encoder
    self.empty_history_query = tf.Variable(empty_history_query.astype(np.float32),
                                           trainable=False, name="empty_history_query")

  def __call__(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    history = tf.cast(features[feats.HISTORY], tf.int32)
    pad = tf.constant(self.encoder.pad_index, tf.int32)
    history = tf.where(history == HISTORY_PAD, pad, history)
    query = self.encoder.query_vector(history, training=False)
    empty = tf.reduce_all(tf.equal(history, pad), axis=1, keepdims=True)
    return tf.where(empty, self.empty_history_query[None, :], query)


class Towers(tf.Module):
  """What trainer/export.py needs of a retrieval model: query_tower and candidate_tower,
  each mapping Transform's output dict to [batch, dim]."""

  def __init__(self, query_tower: tf.Module, candidate_tower: tf.Module):
    super().__init__(name="towers")
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower


def wrap(name: str, fitted, split: protocol.Split) -> Towers:
  """The fitted leaderboard model as towers over vocabulary indices (split's indices)."""
  if name in SEQUENTIAL:
    items = fitted.encoder.item_embeddings.numpy()
    counts = np.bincount(split.fit_items, minlength=split.n_items).astype(np.float64)
    empty = (counts / max(counts.sum(), 1.0)) @ items
    return Towers(_HistoryQuery(fitted.encoder, empty),
                  _Rows(items, feats.ITEM_ID, "item_rows"))
  users = fitted.user_embeddings().copy()
  trained_users = np.unique(split.fit_users)
  users[-1] = users[trained_users].mean(axis=0)  # the unknown-user index is the last one
  return Towers(_Rows(users, feats.USER_ID, "user_rows"),
                _Rows(fitted.item_embeddings(), feats.ITEM_ID, "item_rows"))


def train(name: str, split: protocol.Split, args: Dict[str, Any], history_length: int,
          seed: int, epochs_override: int | None = None) -> tuple:
  """Fits model `name` on split's fit rows; returns (towers, the fitted model)."""
  kwargs = dict(args)
  if name in SEQUENTIAL:
    kwargs["max_len"] = history_length  # the window Transform builds
  if epochs_override is not None:
    kwargs["epochs"] = epochs_override
  fitted = model_class(name)(verbose=True, **kwargs)
  fitted.fit(split, seed=seed)
  return wrap(name, fitted, split), fitted


def recent_histories(split: protocol.Split, length: int) -> Dict[str, List[str]]:
  """Each known user's last `length` fit items as raw ids, oldest first (what a request
  that names only the user is answered from)."""
  out = {}
  for user, sequence in enumerate(split.sequences):
    if len(sequence) and split.user_ids[user] != protocol.UNKNOWN:
      out[str(split.user_ids[user])] = [str(i) for i in split.item_ids[sequence[-length:]]]
  return out
