"""The ranking stage: score (user, item, context) examples with a model chosen by config.

    wide_deep  Wide & Deep (Cheng et al. 2016): a linear model over one-hot categories and
               hashed user/context x item crosses, plus an MLP over the embeddings.
    dcn        DCN-v2 (Wang et al. 2021): cross layers x_{l+1} = x_0 * (W x_l + b) + x_l over
               the concatenated embeddings, stacked before an MLP or beside it.
    deepfm     DeepFM (Guo et al. 2017): first-order terms + the FM pairwise term over the
               field embeddings + an MLP.
    ncf        NeuMF (He et al. 2017): GMF (user_id embedding * item_id embedding) beside an
               MLP over user, item and context embeddings.

`build_mf` is the linear baseline: <sum of user/context embeddings, sum of item
embeddings> + biases. Every model reads Transform's output for the schema's user, item
and context features (trainer/models/embedding.py, the same embeddings as the retrieval towers)
and returns a float32 [batch] score: a logit ("binary": implicit feedback, sigmoid
cross-entropy) or a predicted rating ("regression": MSE). Train with

    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate),
                  loss=ranking_loss(config), metrics=ranking_metrics(config))
    model.fit(dataset_of_(features, label))
"""
import dataclasses
from typing import Dict, List, Optional, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer.config import OBJECTIVES, RankerConfig, validate_ranker
from recsys_tfx.trainer.models.embedding import CATEGORICAL, FeatureEmbedding, UnknownMasking
from recsys_tfx.trainer.models.ncf import MLP, NeuMFHead

# Seeds the hash of the k-th wide cross, so that equal index pairs of different feature
# pairs (gender 0 x genre 3, device 0 x genre 3) land in different buckets.
_CROSS_HASH_KEY = 0x5EED


class Ranker(tf.keras.Model):
  """Masks ids/context to "unknown" while training, embeds every user/item/context
  feature as a field of `embedding_dim`, and leaves the scoring to `score`.

  With `source_stats` (mean and std of each candidate source's scores, [2, sources]) it
  also reads what the retrieval stage knows of each candidate: every source's score
  (standardised) and rank (whether it retrieved the item, and 1/log2(1 + rank)). They
  enter as one more field, which every architecture mixes with the others, and through a
  linear term added to the logit, so any architecture can at least keep the retrieval
  order and learn where the other features should change it."""

  def __init__(self, config: RankerConfig, all_features: List[feats.Feature],
               vocab_sizes: Dict[str, int], source_stats=None, **kwargs):
    super().__init__(**kwargs)
    validate_ranker(config)
    self._config = config
    self._vocab_sizes = dict(vocab_sizes)
    self.input_features = feats.by_role(all_features, *feats.TOWER_ROLES)
    maskable = [f.name for f in self.input_features
                if f.name in (feats.USER_ID, feats.ITEM_ID) or f.role == "context"]
    self._mask = UnknownMasking(self.input_features, vocab_sizes, maskable,
                                config.unknown_rate)
    self._embed = FeatureEmbedding(self.input_features, vocab_sizes, config.embedding_dim,
                                   name="fields")
    self._source_stats = None
    if source_stats is not None:
      stats = np.asarray(source_stats, np.float32)
      self._source_stats = stats
      self._source_mean = tf.constant(stats[0])
      self._source_std = tf.constant(np.maximum(stats[1], 1e-6))
      self._source_field = tf.keras.layers.Dense(config.embedding_dim, name="source_field")
      self._source_linear = tf.keras.layers.Dense(1, name="source_linear")

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    inputs = self._mask(inputs, training=training)
    fields = self._embed(inputs)
    if self._source_stats is None:
      return tf.reshape(self.score(inputs, fields), [-1])
    sources = self.source_features(inputs)
    logit = self.score(inputs, fields + [self._source_field(sources)])
    return tf.reshape(logit + self._source_linear(sources), [-1])

  def source_features(self, inputs: Dict[str, tf.Tensor]) -> tf.Tensor:
    """[batch, 3 * sources]: retrieved (0/1), 1/log2(1 + rank), standardised score."""
    ranks = tf.cast(inputs[contract.SOURCE_RANKS], tf.float32)
    scores = tf.cast(inputs[contract.SOURCE_SCORES], tf.float32)
    retrieved = tf.cast(ranks > 0, tf.float32)
    gain = tf.where(ranks > 0, tf.math.log(2.0) / tf.math.log(tf.maximum(ranks, 1.0) + 1.0),
                    0.0)
    z = tf.clip_by_value((scores - self._source_mean) / self._source_std, -8.0, 8.0)
    return tf.concat([retrieved, gain, z], axis=1)

  def score(self, inputs: Dict[str, tf.Tensor], fields: List[tf.Tensor]) -> tf.Tensor:
    """[batch, 1] score from the (masked) inputs and their field embeddings (the input
    features' fields, in input_features order, then the sources' field if any)."""
    raise NotImplementedError

  def get_config(self) -> dict:
    """Everything the constructor needs, as plain data (Keras saving asks for it)."""
    stats = None if self._source_stats is None else self._source_stats.tolist()
    return {"config": dataclasses.asdict(self._config),
            "all_features": [dataclasses.asdict(f) for f in self.input_features],
            "vocab_sizes": dict(self._vocab_sizes), "source_stats": stats}

  @classmethod
  def from_config(cls, config: dict) -> "Ranker":
    return cls(RankerConfig(**config["config"]),
               [feats.Feature(**f) for f in config["all_features"]], config["vocab_sizes"],
               source_stats=config.get("source_stats"))

  def _linear(self, name: str) -> FeatureEmbedding:
    """First-order terms: one weight per category (per token for "multi", mean-pooled)
    and per numeric feature."""
    return FeatureEmbedding(self.input_features, self._vocab_sizes, 1, name=name)


# ---------------------------------------------------------------------------------------
# The architectures.


class WideDeep(Ranker):
  """Wide: a weight per category (and per numeric feature, times its value) plus hashed
  (user/context x item) index crosses, e.g. gender x genre, hour x genre, user x item.
  Deep: an MLP over the concatenated fields. The score is the sum of the two logits."""

  def __init__(self, config, all_features, vocab_sizes, **kwargs):
    super().__init__(config, all_features, vocab_sizes, **kwargs)
    self._wide = self._linear("wide")
    categorical = [f for f in self.input_features if f.encoding in CATEGORICAL]
    self.crosses = [(a.name, b.name) for a in categorical if a.role in ("user", "context")
                    for b in categorical if b.role == "item"]
    self._buckets = config.wide_hash_buckets
    self._cross_weights = tf.keras.layers.Embedding(
        self._buckets, 1, embeddings_initializer="zeros", name="cross_weights")
    self._deep = MLP(config.hidden_units, name="deep")
    self._deep_logit = tf.keras.layers.Dense(1, name="deep_logit")

  def _cross_logit(self, inputs) -> tf.Tensor:
    """Sum of the weights of the hashed (user/context, item) index pairs of each row; a
    "multi" feature crosses every one of its tokens."""
    if not self._cross_weights.built:
      self._cross_weights.build(None)
    as_2d = lambda x: x if isinstance(x, tf.SparseTensor) else tf.reshape(x, [-1, 1])
    crossed = [
        tf.sparse.cross_hashed([as_2d(inputs[a]), as_2d(inputs[b])],
                               num_buckets=self._buckets, hash_key=_CROSS_HASH_KEY + k)
        for k, (a, b) in enumerate(self.crosses)]
    ids = tf.sparse.concat(1, crossed) if len(crossed) > 1 else crossed[0]
    return tf.nn.safe_embedding_lookup_sparse(self._cross_weights.embeddings, ids,
                                              combiner="sum")

  def score(self, inputs, fields):
    wide = tf.add_n(self._wide(inputs))
    if self.crosses:
      wide += self._cross_logit(inputs)
    return wide + self._deep_logit(self._deep(tf.concat(fields, axis=1)))


class DCN(Ranker):
  """Cross layers (low_rank: W = U V^T of that rank) over x_0 = the concatenated fields;
  "stacked" feeds them to the MLP, "parallel" concatenates them with MLP(x_0)."""

  def __init__(self, config, all_features, vocab_sizes, **kwargs):
    super().__init__(config, all_features, vocab_sizes, **kwargs)
    self._parallel = config.dcn_structure == "parallel"
    self._cross = [tfrs.layers.dcn.Cross(projection_dim=config.low_rank, name=f"cross_{i}")
                   for i in range(config.cross_layers)]
    self._deep = MLP(config.hidden_units, name="deep")
    self._logit = tf.keras.layers.Dense(1, name="logit")

  def score(self, inputs, fields):
    x0 = tf.concat(fields, axis=1)
    x = x0
    for cross in self._cross:
      x = cross(x0, x)
    if self._parallel:
      return self._logit(tf.concat([x, self._deep(x0)], axis=1))
    return self._logit(self._deep(x))


class DeepFM(Ranker):
  """First-order terms + the FM term sum_{i<j} <e_i, e_j> over the fields + an MLP."""

  def __init__(self, config, all_features, vocab_sizes, **kwargs):
    super().__init__(config, all_features, vocab_sizes, **kwargs)
    self._first_order = self._linear("first_order")
    self._deep = MLP(config.hidden_units, name="deep")
    self._deep_logit = tf.keras.layers.Dense(1, name="deep_logit")

  def score(self, inputs, fields):
    e = tf.stack(fields, axis=1)  # [batch, fields, dim]
    # Sum over field pairs of <e_i, e_j>, in O(fields * dim).
    pairwise = 0.5 * tf.reduce_sum(
        tf.square(tf.reduce_sum(e, axis=1)) - tf.reduce_sum(tf.square(e), axis=1),
        axis=1, keepdims=True)
    deep = self._deep_logit(self._deep(tf.concat(fields, axis=1)))
    return tf.add_n(self._first_order(inputs)) + pairwise + deep


class NCF(Ranker):
  """NeuMF (trainer/models/ncf.py NeuMFHead): GMF (user_id embedding * item_id
  embedding) beside an MLP over the user, item and context fields, one logit."""

  def __init__(self, config, all_features, vocab_sizes, **kwargs):
    super().__init__(config, all_features, vocab_sizes, **kwargs)
    by_name = feats.feature_map(self.input_features)
    missing = [n for n in (feats.USER_ID, feats.ITEM_ID) if n not in by_name]
    if missing:
      raise ValueError(f"ncf needs user/item-role features named {missing}")
    # NeuMF gives GMF its own id embeddings: the dot-product and MLP paths want
    # differently shaped spaces.
    self._gmf = FeatureEmbedding([by_name[feats.USER_ID], by_name[feats.ITEM_ID]],
                                 vocab_sizes, config.embedding_dim, name="gmf")
    role_order = {"user": 0, "item": 1, "context": 2}
    self._mlp_order = sorted(range(len(self.input_features)),
                             key=lambda k: role_order[self.input_features[k].role])
    self._head = NeuMFHead(config.hidden_units, name="neumf")

  def score(self, inputs, fields):
    user, item = self._gmf(inputs)
    ordered = [fields[k] for k in self._mlp_order] + fields[len(self.input_features):]
    return self._head(user, item, tf.concat(ordered, axis=1))


class MatrixFactorization(Ranker):
  """The baseline: <sum of user and context field embeddings, sum of item field
  embeddings> + first-order biases + a global bias. Linear in every field on each side,
  so it cannot express an interaction between two item features (e.g. two genres)."""

  def __init__(self, config, all_features, vocab_sizes, **kwargs):
    super().__init__(config, all_features, vocab_sizes, **kwargs)
    roles = [f.role for f in self.input_features]
    self._query = [k for k, r in enumerate(roles) if r in ("user", "context")]
    self._item = [k for k, r in enumerate(roles) if r == "item"]
    self._biases = self._linear("biases")
    self._global_bias = self.add_weight(name="global_bias", shape=(), initializer="zeros")

  def score(self, inputs, fields):
    query = tf.add_n([fields[k] for k in self._query])
    item = tf.add_n([fields[k] for k in self._item])
    dot = tf.reduce_sum(query * item, axis=1, keepdims=True)
    return dot + tf.add_n(self._biases(inputs)) + self._global_bias


_MODELS = {"wide_deep": WideDeep, "dcn": DCN, "deepfm": DeepFM, "ncf": NCF}


def build_ranker(config: RankerConfig, all_features: List[feats.Feature],
                 vocab_sizes: Dict[str, int], source_stats=None) -> tf.keras.Model:
  """`source_stats`: [2, sources] mean and std of the candidate sources' scores, when the
  ranker reads them (it re-orders retrieval candidates); None for features alone."""
  validate_ranker(config)
  return _MODELS[config.architecture](config, all_features, vocab_sizes,
                                      source_stats=source_stats,
                                      name=f"ranker_{config.architecture}")


def build_mf(config: RankerConfig, all_features: List[feats.Feature],
             vocab_sizes: Dict[str, int]) -> tf.keras.Model:
  """The matrix-factorisation baseline (config.architecture is ignored)."""
  return MatrixFactorization(config, all_features, vocab_sizes, name="ranker_mf")


# ---------------------------------------------------------------------------------------
# Loss and metrics.


class RankingLoss(tf.keras.losses.Loss):
  """Per-example loss on the model's [batch] output: sigmoid cross-entropy on the logit
  ("binary", labels 0/1) or squared error ("regression")."""

  def __init__(self, objective: str = "binary", name: Optional[str] = None, **kwargs):
    super().__init__(name=name or f"{objective}_loss", **kwargs)
    if objective not in OBJECTIVES:
      raise ValueError(f"objective={objective!r}; expected one of {OBJECTIVES}")
    self.objective = objective

  def call(self, y_true, y_pred):
    y_pred = tf.reshape(tf.cast(y_pred, tf.float32), [-1])
    y_true = tf.reshape(tf.cast(y_true, tf.float32), [-1])
    if self.objective == "binary":
      return tf.nn.sigmoid_cross_entropy_with_logits(labels=y_true, logits=y_pred)
    return tf.square(y_pred - y_true)

  def get_config(self):
    return {**super().get_config(), "objective": self.objective}


def ranking_loss(config: RankerConfig) -> tf.keras.losses.Loss:
  return RankingLoss(config.objective)


def ranking_metrics(config: RankerConfig) -> list:
  if config.objective == "binary":
    return [tf.keras.metrics.AUC(from_logits=True, name="auc")]
  return [tf.keras.metrics.RootMeanSquaredError(name="rmse")]
