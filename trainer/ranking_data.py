"""Training data for the rankers: implicit positives plus sampled negatives, in tf.data.

Implicit feedback has no observed negatives, so each training positive (user, item,
context) is joined by `ratio` negatives: the same user and context with items drawn from
the catalogue, uniformly or (`sampling_weights`) in proportion to a weight such as
training popularity — the candidates a ranker sees in serving come from retrieval and
are mostly popular, so popular negatives teach it the distinctions it will be asked to
make. Only the training split is used — the sampler never
sees the evaluation or test items — and an item the user interacted with in training is
never used as that user's negative.

Multi-valued features travel as RaggedTensors inside the sampler (they can be gathered and
concatenated) and leave as SparseTensors, the form Transform produces and the models read.
"""
from typing import Dict, List

import numpy as np
import tensorflow as tf

from recsys_tfx.schema import features as feats
from recsys_tfx.trainer.config import NEGATIVE_SAMPLING


def sampling_probabilities(kind: str, counts: np.ndarray):
  """Per catalogue item, from its training count: None (uniform), popularity (+1 so cold
  items can be drawn), or an even mix of the two. The ranker's training negatives and its
  TFMA evaluation negatives (components/ranking_eval_examples.py) both use this."""
  if kind not in NEGATIVE_SAMPLING:
    raise ValueError(f"negative_sampling={kind!r}; expected one of {NEGATIVE_SAMPLING}")
  if kind == "uniform":
    return None
  popularity = (np.asarray(counts, np.float64) + 1.0)
  popularity /= popularity.sum()
  if kind == "popularity":
    return popularity
  return 0.5 * popularity + 0.5 / len(popularity)


def _ragged(x):
  return tf.RaggedTensor.from_sparse(x) if isinstance(x, tf.SparseTensor) else x


def _sparse(x):
  return x.to_sparse() if isinstance(x, tf.RaggedTensor) else x


def pair_keys(user_index, item_index, num_item_indices: int):
  """One int64 per (user, item) pair; item indices lie in [0, num_item_indices)."""
  return tf.cast(user_index, tf.int64) * num_item_indices + tf.cast(item_index, tf.int64)


def positive_pairs_table(dataset: tf.data.Dataset, num_item_indices: int) -> tf.lookup.StaticHashTable:
  """(user, item) pairs seen in training, as a lookup table (value 1 = seen)."""
  keys = [pair_keys(b[feats.USER_ID], b[feats.ITEM_ID], num_item_indices).numpy() for b in dataset]
  keys = np.unique(np.concatenate(keys)) if keys else np.zeros([0], np.int64)
  return tf.lookup.StaticHashTable(
      tf.lookup.KeyValueTensorInitializer(tf.constant(keys, tf.int64),
                                          tf.ones(len(keys), tf.int64)), default_value=0)


class NegativeSampler:
  """Maps a batch of transformed positives to (features, labels) with negatives added."""

  def __init__(self, catalogue: Dict[str, tf.Tensor], item_feature_names: List[str], ratio: int,
               seen_pairs: tf.lookup.StaticHashTable, num_item_indices: int, seed: int = 0,
               sampling_weights=None):
    if ratio < 1:
      raise ValueError(f"negative sampling ratio must be >= 1, got {ratio}")
    self._catalogue = {name: _ragged(catalogue[name]) for name in item_feature_names}
    self._size = int(catalogue[feats.ITEM_ID].shape[0])
    self._log_weights = None if sampling_weights is None else tf.math.log(
        tf.constant(np.asarray(sampling_weights, np.float64) /
                    np.sum(sampling_weights), tf.float32))[None, :]
    self._ratio = ratio
    self._seen = seen_pairs
    self._num_item_indices = num_item_indices
    self._seed = seed

  def __call__(self, batch: Dict[str, tf.Tensor]):
    batch = {name: _ragged(x) for name, x in batch.items()}
    size = tf.shape(batch[feats.USER_ID])[0]
    rows = tf.repeat(tf.range(size), self._ratio)  # each positive's row, `ratio` times
    if self._log_weights is None:
      picks = tf.random.uniform(tf.shape(rows), 0, self._size, tf.int32)
    else:
      picks = tf.cast(tf.random.categorical(self._log_weights, tf.size(rows))[0], tf.int32)
    negatives = {name: tf.gather(x, rows) for name, x in batch.items()
                 if name not in self._catalogue}
    negatives.update({name: tf.gather(x, picks) for name, x in self._catalogue.items()})
    keys = pair_keys(negatives[feats.USER_ID], negatives[feats.ITEM_ID], self._num_item_indices)
    unseen = tf.equal(self._seen.lookup(keys), 0)
    negatives = {name: tf.ragged.boolean_mask(x, unseen) if isinstance(x, tf.RaggedTensor)
                 else tf.boolean_mask(x, unseen) for name, x in negatives.items()}
    combined = {name: _sparse(tf.concat([batch[name], negatives[name]], axis=0))
                for name in batch}
    labels = tf.concat([tf.ones([size]), tf.zeros(tf.shape(negatives[feats.USER_ID]))], axis=0)
    return combined, labels


def with_labels(dataset: tf.data.Dataset, label_feature: str) -> tf.data.Dataset:
  """Explicit feedback: (features, the rating) with no sampling."""
  return dataset.map(lambda batch: (batch, tf.cast(batch[label_feature], tf.float32)))
