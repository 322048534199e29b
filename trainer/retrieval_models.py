"""Retrieval models besides the two-tower: mf, lightgcn, sasrec, bert4rec, and the
baselines popularity, itemknn, ease, transitions.

Each is trained by its implementation in trainer/models/ (factorization.py,
sequential.py, baselines.py: one implementation per model, so the pipeline's model and
the leaderboard's row are the same thing) on the pipeline's train split, indexed by
Transform's vocabularies. The fitted model is then wrapped as a query tower and a
candidate tower over Transform's outputs, the interface trainer/export.py exports with a
top-K index, exactly as it exports the two-tower (ScaNN, except where `exact_search`):

  mf, lightgcn      query = the user's embedding row, candidate = the item's row
                    (an unknown user gets the mean user row)
  sasrec, bert4rec  query = the encoder's state for the user's history window (Transform's
                    `history`, left-padded with -1), candidate = the item's row of the
                    shared item table; an empty history gets the popularity-weighted
                    mean item row, so a user with no history still gets popular items
  itemknn, ease,    query = a row over the catalogue built from the history window (each
  transitions       item once; transitions: the last `window` items weighted 1, 1/2, ...)
                    plus a constant 1, candidate = the item's column of the item-item
                    matrix plus its popularity tie-breaker (trainer/models/baselines.py), so
                    query . candidate is the leaderboard's score. These vectors are as
                    long as the catalogue: exported with exact (brute-force) top-K, not
                    ScaNN, and refused above MAX_ITEM_ITEM_ITEMS items.
  popularity        query = [1], candidate = [the item's training count]; exact top-K
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf

from recsys_tfx.schema import features as feats
from recsys_tfx.schema import time_split
from recsys_tfx.trainer import registry
from recsys_tfx.trainer.models import protocol
from recsys_tfx.trainer.registry import HISTORY_MODELS, SEQUENTIAL_MODELS as SEQUENTIAL
from recsys_tfx.trainer.preprocessing import HISTORY_PAD

# An item-item model is exported as a dense [N, N + 1] float32 table, twice (serving and
# evaluation models): 20K items is 1.6 GB each.
MAX_ITEM_ITEM_ITEMS = 20_000


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


class _HistoryRow(tf.Module):
  """features["history"] [batch, length] -> [batch, n_items + 1]: the history as a row
  over the catalogue (window None: each item once; k: the last k slots weighted 1, 1/2,
  ...; Transform left-pads, so the last slot is the latest item) and a constant 1 that
  multiplies the candidates' popularity tie-breaker."""

  def __init__(self, n_items: int, window: int | None):
    super().__init__(name="history_row")
    self.n_items = n_items
    self.window = window

  def __call__(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    history = tf.cast(features[feats.HISTORY], tf.int32)  # HISTORY_PAD (-1) one-hots to 0
    if self.window is None:
      row = tf.minimum(tf.reduce_sum(tf.one_hot(history, self.n_items), axis=1), 1.0)
    else:
      recent = history[:, ::-1][:, :self.window]  # latest first
      weights = 1.0 / tf.range(1.0, tf.cast(tf.shape(recent)[1], tf.float32) + 1.0)
      row = tf.einsum("bwn,w->bn", tf.one_hot(recent, self.n_items), weights)
    return tf.concat([row, tf.ones_like(row[:, :1])], axis=1)


class _Ones(tf.Module):
  """[batch, 1] of ones: popularity's query, the same for everyone."""

  def __call__(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    return tf.ones([tf.shape(features[feats.USER_ID])[0], 1])


class Towers(tf.Module):
  """What trainer/export.py needs of a retrieval model: query_tower and candidate_tower,
  each mapping Transform's output dict to [batch, dim]; exact_search asks for a
  brute-force top-K index instead of ScaNN."""

  def __init__(self, query_tower: tf.Module, candidate_tower: tf.Module,
               exact_search: bool = False):
    super().__init__(name="towers")
    self.query_tower = query_tower
    self.candidate_tower = candidate_tower
    self.exact_search = exact_search


def item_item_towers(fitted, n_items: int) -> Towers:
  if n_items > MAX_ITEM_ITEM_ITEMS:
    raise ValueError(
        f"{fitted.name} is exported as a dense {n_items:,} x {n_items:,} item-item table "
        f"({n_items * n_items * 4 / 1e9:.1f} GB, twice); the limit is "
        f"{MAX_ITEM_ITEM_ITEMS:,} items. Use mf, lightgcn or two_tower on this catalogue.")
  matrix = fitted.item_item_matrix()
  candidates = np.empty((n_items, n_items + 1), np.float32)
  candidates[:, :n_items] = matrix.T  # item j's candidate vector is column j
  candidates[:, n_items] = fitted.tie_breaker * fitted.popularity
  return Towers(_HistoryRow(n_items, fitted.query_window),
                _Rows(candidates, feats.ITEM_ID, "item_rows"), exact_search=True)


def wrap(name: str, fitted, split: protocol.Split) -> Towers:
  """The fitted model as towers over vocabulary indices (split's indices)."""
  if name == "popularity":
    return Towers(_Ones(name="ones"), _Rows(fitted.counts[:, None], feats.ITEM_ID, "item_rows"),
                  exact_search=True)
  if name in HISTORY_MODELS and name not in SEQUENTIAL:
    return item_item_towers(fitted, split.n_items)
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


def build(name: str, args: Dict[str, Any], history_length: int,
          epochs_override: int | None = None):
  """A fresh, unfitted model `name` with its knobs (`args`); a sequential model reads a
  window of `history_length` items, the one Transform builds."""
  kwargs = dict(args)
  if name in SEQUENTIAL:
    kwargs["max_len"] = history_length
  cls = registry.model_class(name)
  accepted = inspect.signature(cls).parameters
  if epochs_override is not None and "epochs" in accepted:
    kwargs["epochs"] = epochs_override
  if "verbose" in accepted:
    kwargs["verbose"] = True
  return cls(**kwargs)


def train(name: str, split: protocol.Split, args: Dict[str, Any], history_length: int,
          seed: int, epochs_override: int | None = None) -> tuple:
  """Fits model `name` on split's fit rows; returns (towers, the fitted model)."""
  fitted = build(name, args, history_length, epochs_override)
  fitted.fit(split, seed=seed)
  return wrap(name, fitted, split), fitted


def all_histories(data, seed: int, length: int) -> Dict[str, List[str]]:
  """Each user's last `length` item ids over every interaction known (all splits), oldest
  first, in the time split's order (ties broken by its seeded hash): what a request that
  names only the user is answered from."""
  frame = data.interactions[[feats.USER_ID, feats.ITEM_ID, feats.TIMESTAMP]].astype(
      {feats.USER_ID: str, feats.ITEM_ID: str})
  tie = [time_split.tie_break(seed, u, i)
         for u, i in zip(frame[feats.USER_ID], frame[feats.ITEM_ID])]
  frame = frame.assign(tie=np.array(tie, dtype=np.uint64)).sort_values(
      [feats.USER_ID, feats.TIMESTAMP, "tie"], kind="stable")
  return {str(user): items.tolist()[-length:]
          for user, items in frame.groupby(feats.USER_ID, sort=False)[feats.ITEM_ID]}
