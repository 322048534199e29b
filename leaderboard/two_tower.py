"""The pipeline's two-tower model (trainer/model.py, same class, same loss) on the
leaderboard's split, trained in-process.

The TFX Trainer reads Transform's output; here the same encodings are computed with
pandas from the fit rows only, mirroring trainer/preprocessing.py: a vocabulary per id /
string feature ordered by fit frequency with one out-of-vocabulary index, genre tokens as
a sparse bag, categorical ints with an "unknown" bucket, z-scored numbers.
"""
from __future__ import annotations

import os
import time
from typing import Dict, List

import numpy as np
import pandas as pd

import trainer  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from leaderboard.protocol import Recommender, Split
from trainer import features as feats
from trainer.model import ModelConfig, TwoTowerModel

SCHEMA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schema")
SEPARATOR = "|"


class _Encoder:
  """Fit-data statistics for every tower feature, and the encoding of a raw column."""

  def __init__(self, features: List[feats.Feature], fit_columns: Dict[str, pd.Series]):
    self.features = features
    self.vocab: Dict[str, Dict[str, int]] = {}
    self.moments: Dict[str, tuple] = {}
    for f in features:
      column = fit_columns[f.name]
      if f.encoding == "vocab":
        self.vocab[f.name] = _vocabulary(column.astype(str))
      elif f.encoding == "multi":
        self.vocab[f.name] = _vocabulary(column.astype(str).str.split(SEPARATOR).explode())
      elif f.encoding == "numeric":
        values = pd.to_numeric(column).astype(np.float64)
        self.moments[f.name] = (values.mean(), values.std(ddof=0) or 1.0)

  def vocab_sizes(self) -> Dict[str, int]:
    return {name: len(v) for name, v in self.vocab.items()}

  def encode(self, f: feats.Feature, column: pd.Series):
    if f.encoding == "vocab":
      vocab = self.vocab[f.name]
      return tf.constant(column.astype(str).map(vocab).fillna(len(vocab)).to_numpy(np.int64))
    if f.encoding == "multi":
      vocab = self.vocab[f.name]
      tokens = [[vocab.get(t, len(vocab)) for t in str(v).split(SEPARATOR) if t]
                for v in column]
      return tf.ragged.constant(tokens, dtype=tf.int64, ragged_rank=1)
    if f.encoding == "int_cat":
      v = pd.to_numeric(column).fillna(-1).to_numpy(np.int64)
      return tf.constant(np.where((v >= 0) & (v < f.cardinality), v, f.cardinality))
    mean, std = self.moments[f.name]
    return tf.constant(((pd.to_numeric(column) - mean) / std).to_numpy(np.float32))


def _vocabulary(values: pd.Series) -> Dict[str, int]:
  counts = values[values != ""].value_counts(sort=False)
  # tft orders by frequency, ties by value (descending); any fixed order serves here.
  ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
  return {value: i for i, (value, _) in enumerate(ordered)}


def _as_model_input(encoded: Dict[str, object]) -> Dict[str, object]:
  return {k: v.to_sparse() if isinstance(v, tf.RaggedTensor) else v for k, v in encoded.items()}


class TwoTower(Recommender):
  name = "two_tower"

  def __init__(self, schema_name: str, epochs: int = 3, batch_size: int = 1024,
               learning_rate: float = 0.005, embedding_dim: int = 32, output_dim: int = 64,
               verbose: bool = False):
    self.schema_file = os.path.join(SCHEMA_DIR, schema_name, "schema.pbtxt")
    self.epochs, self.batch_size, self.verbose = epochs, batch_size, verbose
    self.config = ModelConfig(learning_rate=learning_rate, embedding_dim=embedding_dim,
                              output_dim=output_dim)
    self.loss_history: List[float] = []

  def _columns(self, split: Split, users: np.ndarray, items: np.ndarray,
               context: pd.DataFrame) -> Dict[str, pd.Series]:
    """Raw feature columns for (user, item, context) rows, keyed by feature name."""
    columns = {feats.USER_ID: pd.Series(split.user_ids[users]),
               feats.ITEM_ID: pd.Series(split.item_ids[items])}
    for f in self.features:
      if f.name in columns:
        continue
      if f.role == "user":
        columns[f.name] = split.users[f.name].iloc[users].reset_index(drop=True)
      elif f.role == "item":
        columns[f.name] = split.items[f.name].iloc[items].reset_index(drop=True)
      else:
        columns[f.name] = context[f.name].reset_index(drop=True)
    return columns

  def _encode(self, columns: Dict[str, pd.Series], features) -> Dict[str, object]:
    return {f.name: self.encoder.encode(f, columns[f.name]) for f in features}

  def fit(self, split: Split, seed: int = 0) -> None:
    tf.keras.utils.set_random_seed(seed)
    self.features = feats.query_features(feats.load_features(self.schema_file)) + \
        feats.candidate_features(feats.load_features(self.schema_file))
    columns = self._columns(split, split.fit_users, split.fit_items, split.fit_context)
    self.encoder = _Encoder(self.features, columns)
    vocab_sizes = self.encoder.vocab_sizes()
    encoded = self._encode(columns, self.features)
    counts = np.bincount(encoded[feats.ITEM_ID].numpy(),
                         minlength=vocab_sizes[feats.ITEM_ID] + 1)
    self.model = TwoTowerModel(self.features, vocab_sizes, counts, self.config)
    self.model.compile(optimizer=tf.keras.optimizers.Adam(self.config.learning_rate))
    dataset = (tf.data.Dataset.from_tensor_slices(encoded)
               .shuffle(len(split.fit_users), seed=seed)
               .batch(self.batch_size).map(_as_model_input).prefetch(tf.data.AUTOTUNE))
    for epoch in range(self.epochs):
      start = time.time()
      history = self.model.fit(dataset, epochs=1, verbose=0)
      self.loss_history.append(float(history.history["loss"][-1]))
      if self.verbose:
        print(f"  two_tower epoch {epoch + 1}/{self.epochs} loss "
              f"{self.loss_history[-1]:.4f} ({time.time() - start:.0f}s)", flush=True)
    every_item = np.arange(split.n_items)
    item_columns = self._columns(split, np.zeros_like(every_item), every_item,
                                 split.fit_context.iloc[:0])
    candidate = feats.candidate_features(self.features)
    self.item_vectors = self.model.candidate_tower(
        _as_model_input(self._encode(item_columns, candidate))).numpy()

  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    columns = self._columns(split, split.test_users[rows], split.test_items[rows] * 0,
                            split.test_context.iloc[rows])
    query = self.model.query_tower(
        _as_model_input(self._encode(columns, feats.query_features(self.features)))).numpy()
    return query @ self.item_vectors.T

  def num_parameters(self) -> int:
    return int(sum(np.prod(w.shape) for w in self.model.trainable_weights))
