"""The two-tower model, in-process on tiny random data: shapes, and the loss goes down."""
import numpy as np
import tensorflow as tf

from recsys_tfx.schema.features import SCHEMA_DIR
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer.models.embedding import unknown_index
from recsys_tfx.trainer.config import TwoTowerConfig as ModelConfig
from recsys_tfx.trainer.models.two_tower import TwoTowerModel

SYNTHETIC_SCHEMA = f"{SCHEMA_DIR}/synthetic/schema.pbtxt"


def _batch(features, vocab_sizes, n, rng):
  out = {}
  for f in features:
    if f.encoding == "vocab":
      out[f.name] = tf.constant(rng.integers(0, vocab_sizes[f.name], n), tf.int64)
    elif f.encoding == "int_cat":
      out[f.name] = tf.constant(rng.integers(0, f.cardinality, n), tf.int64)
    elif f.encoding == "multi":
      tokens = tf.ragged.constant([list(rng.integers(0, vocab_sizes[f.name], 2)) for _ in range(n)],
                                  dtype=tf.int64)
      out[f.name] = tokens.to_sparse()
    else:
      out[f.name] = tf.constant(rng.normal(size=n), tf.float32)
  return out


def test_features_from_curated_schema():
  features = feats.load_features(SYNTHETIC_SCHEMA)
  by_name = feats.feature_map(features)
  assert by_name["user_id"].role == "user" and by_name["user_id"].encoding == "vocab"
  assert by_name["genres"].encoding == "multi"
  assert by_name["hour"].encoding == "int_cat" and by_name["hour"].cardinality == 24
  assert by_name["label"].encoding == "passthrough"
  assert {f.name for f in feats.query_features(features)} >= {"user_id", "hour", "device", "age"}
  assert "item_id" in {f.name for f in feats.candidate_features(features)}
  assert unknown_index(by_name["hour"], {}) == 24


def test_two_tower_trains_and_embeds():
  tf.keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  features = feats.load_features(SYNTHETIC_SCHEMA)
  vocab = {"user_id": 50, "item_id": 40, "genres": 6, "device": 3, "gender": 2}
  # Users 0..49 always pick item (user % 40): learnable structure.
  data = _batch(features, vocab, 512, rng)
  data["item_id"] = data["user_id"] % 40
  model = TwoTowerModel(features, vocab, np.bincount(data["item_id"].numpy(), minlength=41),
                        ModelConfig(learning_rate=0.02))
  model.compile(optimizer=tf.keras.optimizers.Adam(0.02))
  ds = tf.data.Dataset.from_tensor_slices(data).batch(64)
  history = model.fit(ds, epochs=15, verbose=0).history["loss"]
  print("loss per epoch", history)
  assert history[-1] < 0.6 * history[0], history
  q = model.query_tower(data)
  c = model.candidate_tower(data)
  assert q.shape == (512, 64) and c.shape == (512, 64)
  np.testing.assert_allclose(np.linalg.norm(q.numpy(), axis=1), 1.0, rtol=1e-4)
