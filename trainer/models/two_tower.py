"""The two-tower retrieval model (TFRS), built from the schema's feature roles.

Query tower: user id + user features + context.  Candidate tower: item id + item
content, so an item never seen in training still gets an embedding from its content.

Loss: in-batch sampled softmax. In-batch negatives are drawn in proportion to
popularity, so the logits are corrected by log(sampling probability) (logQ correction,
Yi et al. 2019), and a batch's other rows that hold the same item are not counted as
negatives (accidental-hit removal).

Ids and context are replaced by their "unknown" index at a small rate while training, so
the unknown-user / unknown-item / missing-context embeddings are trained too: cold-start
users and items and requests without context then get sensible vectors.

TwoTowerModel is what the pipeline's Trainer fits on Transform's output (trainer/task.py).
TwoTower fits the same class on a Split in-process (the leaderboard): the same encodings
are computed with pandas from the fit rows only, mirroring trainer/preprocessing.py: a
vocabulary per id / string feature ordered by fit frequency with one out-of-vocabulary
index, genre tokens as a sparse bag, categorical ints with an "unknown" bucket, z-scored
numbers.
"""
from __future__ import annotations

import time
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_tfx.schema import features as feats
from recsys_tfx.trainer.config import TwoTowerConfig
from recsys_tfx.trainer.models.embedding import FeatureEmbedding, UnknownMasking
from recsys_tfx.trainer.models.protocol import Recommender, Split


class Tower(tf.keras.Model):
  """Embeds each feature by its encoding (trainer/models/embedding.py), concatenates, and maps
  through an MLP to a unit-length vector (so dot product == cosine, which ScaNN indexes
  directly)."""

  def __init__(self, features: List[feats.Feature], vocab_sizes: Dict[str, int],
               config: TwoTowerConfig, maskable: Sequence[str] = (), **kwargs):
    super().__init__(**kwargs)
    self._mask = UnknownMasking(features, vocab_sizes, maskable, config.unknown_rate)
    # "scalar": a numeric feature enters as its z-score, a column of its own.
    self._embed = FeatureEmbedding(features, vocab_sizes, config.embedding_dim,
                                   numeric="scalar")
    self._mlp = tf.keras.Sequential(
        [tf.keras.layers.Dense(units, activation="relu") for units in config.hidden_units]
        + [tf.keras.layers.Dense(config.output_dim)])

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    fields = self._embed(self._mask(inputs, training=training))
    return tf.math.l2_normalize(self._mlp(tf.concat(fields, axis=1)), axis=1)


class TwoTowerModel(tfrs.Model):

  def __init__(self, all_features: List[feats.Feature], vocab_sizes: Dict[str, int],
               item_counts: np.ndarray, config: TwoTowerConfig):
    super().__init__()
    query = feats.query_features(all_features)
    candidate = feats.candidate_features(all_features)
    masked_query = [f.name for f in query if f.name == feats.USER_ID or f.role == "context"]
    self.query_tower = Tower(query, vocab_sizes, config, maskable=masked_query, name="query_tower")
    self.candidate_tower = Tower(candidate, vocab_sizes, config, maskable=[feats.ITEM_ID],
                                 name="candidate_tower")
    # Add-one smoothing keeps log(probability) finite for items absent from training.
    counts = np.asarray(item_counts, dtype=np.float64) + 1.0
    self._item_probability = tf.constant(counts / counts.sum(), dtype=tf.float32)
    self._logq_correction = config.logq_correction
    self.task = tfrs.tasks.Retrieval(temperature=config.temperature, remove_accidental_hits=True)

  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    query = self.query_tower(features, training=training)
    candidate = self.candidate_tower(features, training=training)
    item = features[feats.ITEM_ID]
    probability = tf.gather(self._item_probability, item) if self._logq_correction else None
    return self.task(query, candidate,
                     candidate_sampling_probability=probability,
                     candidate_ids=item,
                     compute_metrics=False)


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
    self.schema_file = feats.curated_schema_file(schema_name)
    self.epochs, self.batch_size, self.verbose = epochs, batch_size, verbose
    self.config = TwoTowerConfig(learning_rate=learning_rate, embedding_dim=embedding_dim,
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
