"""Transform's preprocessing_fn: one encoding per feature, chosen by schema/features.py.

Analyzers (vocabularies, means) see only the train split (Transform's default
splits_config), so items first seen in eval/test map to the out-of-vocabulary index,
exactly as an unseen item would at serving time.
"""
from typing import Any, Dict

import tensorflow as tf
import tensorflow_transform as tft

from recsys_tfx.schema import features as feats

# One OOV bucket per vocabulary: index == vocabulary size means "unseen".
NUM_OOV_BUCKETS = 1
HISTORY_PAD = -1  # a window slot with no item (the user had fewer earlier items)


def _dense(x):
  """[batch, 1] -> [batch]; raw scalar features arrive as FixedLen [1]."""
  return tf.squeeze(x, axis=1) if isinstance(x, tf.Tensor) else x


def encode(feature: feats.Feature, x):
  if feature.encoding == "vocab":
    return tft.compute_and_apply_vocabulary(
        _dense(x), vocab_filename=feature.name, num_oov_buckets=NUM_OOV_BUCKETS)
  if feature.encoding == "multi":
    # Sparse in, sparse out: the trainer mean-pools the embeddings of the tokens.
    return tft.compute_and_apply_vocabulary(
        x, vocab_filename=feature.name, num_oov_buckets=NUM_OOV_BUCKETS)
  if feature.encoding == "int_cat":
    # Values outside the domain (ExampleValidator reports them) land in "unknown".
    v = tf.cast(_dense(x), tf.int64)
    in_domain = tf.logical_and(v >= 0, v < feature.cardinality)
    return tf.where(in_domain, v, tf.constant(feature.cardinality, tf.int64))
  if feature.encoding == "numeric":
    return tft.scale_to_z_score(tf.cast(_dense(x), tf.float32))
  return _dense(x)  # passthrough: label, rating, timestamp


def history_window(item_indices: tf.SparseTensor, length: int) -> tf.Tensor:
  """Each row's last `length` indices, oldest first, LEFT-padded with HISTORY_PAD:
  [batch, length], the most recent item in the last column."""
  ragged = tf.RaggedTensor.from_sparse(item_indices)
  lengths = tf.minimum(ragged.row_lengths(), length)
  recent = ragged[:, -length:] if length else ragged
  right_padded = recent.to_tensor(default_value=HISTORY_PAD, shape=[None, length])
  # Shift each row right by its padding: slot j takes item j - (length - row length).
  source = tf.range(length, dtype=tf.int64)[None, :] - (length - lengths)[:, None]
  shifted = tf.gather(right_padded, tf.maximum(source, 0), batch_dims=1)
  return tf.where(source >= 0, shifted, tf.constant(HISTORY_PAD, tf.int64))


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, Any]:
  features = feats.load_features(custom_config["schema_file"])
  history = feats.history_feature(features)
  # Without a model that reads it, history is not worth a column per example.
  history_length = int(custom_config.get("history_length", 0)) if history else 0
  out = {f.name: encode(f, inputs[f.name]) for f in features
         if f.name in inputs and f.encoding not in ("slice", "history")
         and not (history_length and f.name == feats.ITEM_ID)}
  if history_length:
    # One item vocabulary (from item_id on the train split) indexes the history too.
    item = _dense(inputs[feats.ITEM_ID])
    vocab = tft.vocabulary(item, vocab_filename=feats.ITEM_ID)
    out[feats.ITEM_ID] = tft.apply_vocabulary(item, vocab, num_oov_buckets=NUM_OOV_BUCKETS)
    indices = tft.apply_vocabulary(inputs[history.name], vocab, num_oov_buckets=NUM_OOV_BUCKETS)
    out[history.name] = history_window(indices, history_length)
  return out
