"""Per-feature embeddings of Transform's output, shared by the retrieval towers and the
ranking models, so every model reads a feature the same way:

    "vocab" / "int_cat"  [batch] int64 index      -> its row of an embedding table
    "multi"              SparseTensor of tokens   -> mean of the tokens' rows (none: zeros)
    "numeric"            [batch] float32 z-score  -> value * a learned vector ("vector"),
                                                     or the value itself ("scalar")

Each feature becomes one field of width `dim` (a "scalar" numeric: width 1), which is what
factorisation machines and cross networks need. With dim=1 the fields are the weights of
a linear model over one-hot categories.
"""
from typing import Dict, List, Sequence

import tensorflow as tf

from recsys_tfx.schema import features as feats
from recsys_tfx.trainer.preprocessing import NUM_OOV_BUCKETS

CATEGORICAL = ("vocab", "multi", "int_cat")
NUMERIC_MODES = ("vector", "scalar")


def unknown_index(feature: feats.Feature, vocab_sizes: Dict[str, int]) -> int:
  """The index that means "not seen in training" for a categorical feature."""
  if feature.encoding == "int_cat":
    return feature.cardinality
  return vocab_sizes[feature.name]  # the first OOV bucket


def embedding_rows(feature: feats.Feature, vocab_sizes: Dict[str, int]) -> int:
  if feature.encoding == "int_cat":
    return feature.cardinality + 1
  return vocab_sizes[feature.name] + NUM_OOV_BUCKETS


class UnknownMasking(tf.keras.layers.Layer):
  """While training, replaces the named categorical features by their "unknown" index at
  `rate`, so the unknown rows are trained too: cold-start users and items and requests
  without context then get sensible vectors. Mask once per model, before any embedding,
  so that every part of the model sees the same masked example."""

  def __init__(self, features: List[feats.Feature], vocab_sizes: Dict[str, int],
               names: Sequence[str], rate: float, **kwargs):
    super().__init__(**kwargs)
    self._rate = rate
    self._unknown = {f.name: unknown_index(f, vocab_sizes) for f in features
                     if f.name in names and f.encoding in ("vocab", "int_cat")}

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> Dict[str, tf.Tensor]:
    if not training or self._rate <= 0 or not self._unknown:
      return inputs
    out = dict(inputs)
    for name, unknown in self._unknown.items():
      ids = out[name]
      drop = tf.random.uniform(tf.shape(ids)) < self._rate
      out[name] = tf.where(drop, tf.constant(unknown, ids.dtype), ids)
    return out


class FeatureEmbedding(tf.keras.layers.Layer):
  """One [batch, dim] tensor per feature, in the order of `features`."""

  def __init__(self, features: List[feats.Feature], vocab_sizes: Dict[str, int], dim: int,
               numeric: str = "vector", **kwargs):
    super().__init__(**kwargs)
    if numeric not in NUMERIC_MODES:
      raise ValueError(f"numeric={numeric!r}; expected one of {NUMERIC_MODES}")
    not_inputs = [f"{f.name} ({f.encoding})" for f in features
                  if f.encoding not in CATEGORICAL + ("numeric",)]
    if not_inputs:
      raise ValueError(f"features {not_inputs} are not model inputs (labels, ratings, "
                       f"times and slices never feed a model)")
    self.features = list(features)
    self._dim = dim
    self._tables = {
        f.name: tf.keras.layers.Embedding(embedding_rows(f, vocab_sizes), dim,
                                          name=f"{f.name}_embedding")
        for f in self.features if f.encoding in CATEGORICAL}
    # value * vector == Dense(dim) without bias on the [batch, 1] value.
    self._numeric = {} if numeric == "scalar" else {
        f.name: tf.keras.layers.Dense(dim, use_bias=False, name=f"{f.name}_vector")
        for f in self.features if f.encoding == "numeric"}

  def field_width(self, feature: feats.Feature) -> int:
    return 1 if feature.encoding == "numeric" and not self._numeric else self._dim

  def call(self, inputs: Dict[str, tf.Tensor]) -> List[tf.Tensor]:
    fields = []
    for f in self.features:
      x = inputs[f.name]
      if f.encoding == "multi":
        table = self._tables[f.name]
        if not table.built:
          table.build(None)
        fields.append(tf.nn.safe_embedding_lookup_sparse(table.embeddings, x, combiner="mean"))
      elif f.name in self._tables:
        fields.append(self._tables[f.name](x))
      else:
        value = tf.reshape(tf.cast(x, tf.float32), [-1, 1])
        fields.append(self._numeric[f.name](value) if self._numeric else value)
    return fields
