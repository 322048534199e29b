"""Transform's preprocessing_fn: one encoding per feature, chosen by trainer/features.py.

Analyzers (vocabularies, means) see only the train split (Transform's default
splits_config), so items first seen in eval/test map to the out-of-vocabulary index,
exactly as an unseen item would at serving time.
"""
from typing import Any, Dict

import tensorflow as tf
import tensorflow_transform as tft

from trainer import features as feats

# One OOV bucket per vocabulary: index == vocabulary size means "unseen".
NUM_OOV_BUCKETS = 1


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


def preprocessing_fn(inputs: Dict[str, Any], custom_config: Dict[str, Any]) -> Dict[str, Any]:
  features = feats.load_features(custom_config["schema_file"])
  return {f.name: encode(f, inputs[f.name]) for f in features
          if f.name in inputs and f.encoding != "slice"}
