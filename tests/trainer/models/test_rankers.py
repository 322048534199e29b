"""The ranking models, in-process on tiny random data built from the synthetic schema's real
feature list: output shapes, the training loss goes down on labels with learnable
structure, the regression objective, config validation, and scoring a candidate batch."""
import os

import numpy as np
import pytest
import tensorflow as tf

from recsys_tfx.schema.features import SCHEMA_DIR
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer.config import RankerConfig, validate_ranker
from recsys_tfx.trainer.models import rankers as ranking

FEATURES = feats.load_features(os.path.join(SCHEMA_DIR, "synthetic", "schema.pbtxt"))
VOCAB = {"user_id": 30, "item_id": 20, "genres": 6, "device": 3, "gender": 2}
N = 1024


def random_batch(n: int, rng) -> dict:
  """Transformed features as Transform outputs them; vocab ids include the OOV index."""
  out = {}
  for f in feats.by_role(FEATURES, *feats.TOWER_ROLES):
    if f.encoding == "vocab":
      out[f.name] = tf.constant(rng.integers(0, VOCAB[f.name] + 1, n), tf.int64)
    elif f.encoding == "int_cat":
      out[f.name] = tf.constant(rng.integers(0, f.cardinality + 1, n), tf.int64)
    elif f.encoding == "multi":  # 0-3 tokens a row: empty rows must work too
      tokens = [list(rng.integers(0, VOCAB[f.name] + 1, rng.integers(0, 4))) for _ in range(n)]
      out[f.name] = tf.ragged.constant(tokens, dtype=tf.int64).to_sparse()
    else:
      out[f.name] = tf.constant(rng.normal(size=n), tf.float32)
  return out


def learnable_logit(x: dict, rng) -> np.ndarray:
  """A user x item interaction (a random rank-2 taste table) plus user/context terms."""
  users = rng.normal(size=(VOCAB["user_id"] + 1, 2))
  items = rng.normal(size=(VOCAB["item_id"] + 1, 2))
  taste = (users[x["user_id"].numpy()] * items[x["item_id"].numpy()]).sum(axis=1)
  return 2.0 * taste + 1.0 * (x["gender"].numpy() == 0) - 0.8 * x["age"].numpy()


def dataset(x, y, batch_size=128):
  return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def fit(model, config, x, y, epochs):
  model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate),
                loss=ranking.ranking_loss(config), metrics=ranking.ranking_metrics(config))
  before = model.evaluate(dataset(x, y), verbose=0, return_dict=True)
  model.fit(dataset(x, y), epochs=epochs, verbose=0)
  after = model.evaluate(dataset(x, y), verbose=0, return_dict=True)
  return before, after


MODELS = {
    "wide_deep": dict(architecture="wide_deep"),
    "dcn_stacked": dict(architecture="dcn"),
    "dcn_parallel_low_rank": dict(architecture="dcn", dcn_structure="parallel", low_rank=4),
    "deepfm": dict(architecture="deepfm"),
    "ncf": dict(architecture="ncf"),
    "mf": dict(),  # the baseline, via build_mf
}


def build(name, **overrides):
  config = RankerConfig(**{**MODELS[name], "learning_rate": 0.01, **overrides})
  build_fn = ranking.build_mf if name == "mf" else ranking.build_ranker
  return build_fn(config, FEATURES, VOCAB), config


@pytest.mark.parametrize("name", list(MODELS))
def test_binary_ranker_trains(name):
  tf.keras.utils.set_random_seed(0)
  rng = np.random.default_rng(0)
  x = random_batch(N, rng)
  y = tf.constant(learnable_logit(x, rng) > 0, tf.float32)
  model, config = build(name)
  scores = model(x)
  assert scores.shape == (N,) and scores.dtype == tf.float32
  before, after = fit(model, config, x, y, epochs=8)
  print(name, "loss", before["loss"], "->", after["loss"], "auc", after["auc"])
  assert after["loss"] < 0.7 * before["loss"], (before, after)
  assert after["auc"] > 0.85, after


@pytest.mark.parametrize("name", ["dcn_stacked", "wide_deep"])
def test_regression_ranker_trains(name):
  tf.keras.utils.set_random_seed(0)
  rng = np.random.default_rng(1)
  x = random_batch(N, rng)
  y = tf.constant(np.clip(3.0 + 0.5 * learnable_logit(x, rng), 0.5, 5.0), tf.float32)
  model, config = build(name, objective="regression")
  before, after = fit(model, config, x, y, epochs=8)
  print(name, "rmse", before["rmse"], "->", after["rmse"])
  assert after["rmse"] < 0.5 * before["rmse"], (before, after)


@pytest.mark.parametrize("name", list(MODELS))
def test_scores_200_candidates_for_one_user_in_one_call(name):
  tf.keras.utils.set_random_seed(0)
  rng = np.random.default_rng(2)
  n = 200
  x = random_batch(n, rng)
  for f in feats.by_role(FEATURES, "user", "context"):  # one user, one request context
    x[f.name] = tf.fill([n], x[f.name][0]) if f.encoding != "multi" else x[f.name]
  model, _ = build(name)
  scores = model(x).numpy()
  assert scores.shape == (n,) and np.isfinite(scores).all()
  assert np.unique(np.round(scores, 6)).size > n // 2  # candidates are told apart
  # Scoring in one call == scoring each candidate alone (no batch-level leakage).
  first = {k: (tf.sparse.slice(v, [0, 0], [1, v.dense_shape[1]])
               if isinstance(v, tf.SparseTensor) else v[:1]) for k, v in x.items()}
  np.testing.assert_allclose(model(first).numpy(), scores[:1], rtol=1e-5, atol=1e-6)


def test_output_ignores_labels_and_needs_only_model_features():
  model, _ = build("dcn_stacked")
  x = random_batch(8, np.random.default_rng(3))
  with_extra = {**x, "label": tf.ones([8]), "timestamp": tf.zeros([8], tf.int64)}
  np.testing.assert_allclose(model(x).numpy(), model(with_extra).numpy())


@pytest.mark.parametrize("field, value, allowed", [
    ("architecture", "xgboost", ["wide_deep", "dcn", "deepfm", "ncf"]),
    ("dcn_structure", "diagonal", ["stacked", "parallel"]),
    ("objective", "ranknet", ["binary", "regression"]),
    ("low_rank", 0, ["None", ">= 1"]),
    ("cross_layers", 0, [">= 1"]),
    ("embedding_dim", -4, [">= 1"]),
    ("wide_hash_buckets", 0, [">= 1"]),
    ("hidden_units", (64, 0), [">= 1"]),
    ("learning_rate", 0.0, ["> 0"]),
    ("unknown_rate", 1.0, ["[0, 1)"]),
])
def test_validate_config_names_bad_value_and_allowed(field, value, allowed):
  config = RankerConfig(**{field: value})
  for call in (lambda: validate_ranker(config),
               lambda: ranking.build_ranker(config, FEATURES, VOCAB)):
    with pytest.raises(ValueError) as err:
      call()
    message = str(err.value)
    assert f"{field}={value!r}" in message, message
    for a in allowed:
      assert a in message, message


def test_defaults_are_valid_and_metrics_match_objective():
  validate_ranker(RankerConfig())
  assert [m.name for m in ranking.ranking_metrics(RankerConfig())] == ["auc"]
  regression = RankerConfig(objective="regression")
  assert [m.name for m in ranking.ranking_metrics(regression)] == ["rmse"]


@pytest.mark.parametrize("name", list(MODELS))
def test_get_config_rebuilds_the_same_model(name):
  model, _ = build(name)
  clone = type(model).from_config(model.get_config())
  assert clone.get_config() == model.get_config()
  assert clone(random_batch(8, np.random.default_rng(4))).shape == (8,)
