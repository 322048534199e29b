"""Exports the retrieval SavedModel: Transform graph + query tower + a ScaNN index over
the whole catalogue (exact brute-force top-K for a model that asks for it: the
baselines, whose vectors are as long as the catalogue), with signatures named after the
canonical record.

Signatures (all take raw values; Transform runs inside the model):
  serving_default(user_id)                    -> item_ids [batch, K], scores [batch, K]
  recommend_with_context(user_id, <context>)  -> item_ids, scores
  query_embedding(user_id, <context>)         -> embedding [batch, D]
  item_embeddings()                           -> item_ids [N], embeddings [N, D]
  evaluate_examples(examples)                 -> ranks [batch, 2]: full-catalogue ranks of
      each serialized example's item for the model and for popularity (TFMA reads this)
A model that reads the user's item history (sasrec, bert4rec, itemknn, ease,
transitions: trainer/registry.py HISTORY_MODELS) also has:
  recommend_with_history(history, <context>)  -> item_ids, scores; `history` is a string
      [batch, length] of item ids, oldest first, "" as padding (any side)
  history_embedding(history, <context>)       -> embedding [batch, D]
and answers the user-id signatures from each user's stored training history (the last
`history_length` items of the train split).

Context values that are unknown or absent use the feature's "unknown" value (-1 for a
categorical int such as hour, "" for a string such as device); the model was trained
to handle them (see trainer/models/two_tower.py).  User features are looked up inside the model
from the user table, so a request needs only the user id.
"""
import dataclasses
import math
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_recommenders as tfrs
import tensorflow_transform as tft

from recsys_tfx.env import require_legacy_keras
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import metrics

require_legacy_keras(__name__)  # TFRS's top-K layers are Keras 2 layers

SCANN_NAMESPACE = "Scann"  # ScaNN's custom ops live in this namespace; SavedModel must allow it
UNKNOWN_INT = contract.UNKNOWN_INT
SMALL_CATALOGUE = 2000
MAX_LEAVES = 2000
# Items scanned per query: SCANNED_PER_ROOT * sqrt(N), at most half the catalogue (so half
# up to 160K items, 20% at 1M). Tuned with bench/scann_index.py (clustered 64-d
# embeddings): at 1M, recall@10 0.99 at 34-48x less single-query latency than brute
# force; searching half the leaves gave 1.00 at only 19-23x.
SCANNED_PER_ROOT = 200
# Asymmetric-hashing scores only rank roughly: re-score exactly the best
# REORDER_PER_RESULT * top_k candidates (at least MIN_REORDER). Re-scoring max(500, top_k)
# instead cost recall@300 0.977 -> 0.957 at 1M items and 0.943 -> 0.795 at 100K.
REORDER_PER_RESULT = 10
MIN_REORDER = 300


def scann_config(num_items: int, top_k: int = 100) -> Dict[str, int]:
  """ScaNN settings (keyword arguments of the TFRS ScaNN layer) from the catalogue size.

  Below SMALL_CATALOGUE items a partition tree saves nothing worth its recall loss, so
  two leaves, both searched (exhaustive asymmetric-hashing scores; a one-leaf tree
  returns one item repeated, a ScaNN quirk). Above it, ~sqrt(N) leaves (at most
  MAX_LEAVES), of which the search visits enough to scan SCANNED_PER_ROOT * sqrt(N)
  items, but at most half of them. Either way the best max(MIN_REORDER,
  REORDER_PER_RESULT * top_k) candidates (at most the whole catalogue, at least top_k)
  are re-scored exactly.
  """
  if num_items < SMALL_CATALOGUE:
    leaves, searched = 2, 2
  else:
    leaves = min(MAX_LEAVES, int(math.sqrt(num_items)))
    searched = math.ceil(leaves * min(0.5, SCANNED_PER_ROOT / math.sqrt(num_items)))
  reorder = max(top_k, min(num_items, max(MIN_REORDER, REORDER_PER_RESULT * top_k)))
  return {
      "num_leaves": leaves,
      "num_leaves_to_search": searched,
      "num_reordering_candidates": reorder,
  }


def _default_value(dtype: tf.DType):
  return "" if dtype == tf.string else (UNKNOWN_INT if dtype.is_integer else 0.0)


def _as_raw(spec, values: tf.Tensor):
  if isinstance(spec, tf.io.FixedLenFeature):
    return tf.reshape(tf.cast(values, spec.dtype), [-1, 1])
  return values  # already sparse


def raw_batch(raw_spec: Dict[str, object], provided: Dict[str, tf.Tensor],
              batch_size: tf.Tensor) -> Dict[str, object]:
  """A full raw feature dict for the Transform layer: the provided columns, and a
  neutral filler for the rest (the tower that reads a column always provides it)."""
  out = {}
  for name, spec in raw_spec.items():
    if name in provided:
      out[name] = _as_raw(spec, provided[name])
    elif isinstance(spec, tf.io.FixedLenFeature):
      out[name] = tf.fill([batch_size, 1], tf.constant(_default_value(spec.dtype), spec.dtype))
    else:
      out[name] = tf.SparseTensor(tf.zeros([0, 2], tf.int64), tf.zeros([0], spec.dtype),
                                  tf.stack([tf.cast(batch_size, tf.int64), 0]))
  return out


def _column_tensor(values: pd.Series, dtype: tf.DType) -> tf.Tensor:
  if dtype == tf.string:
    return tf.constant(values.astype(str).tolist(), tf.string)
  return tf.constant(pd.to_numeric(values).to_numpy(), dtype)


def catalogue_raw_features(items: pd.DataFrame, raw_spec: Dict[str, object],
                           item_features: List[feats.Feature]) -> Dict[str, tf.Tensor]:
  """Item table -> raw tensors for the item-role features (multi-valued ones sparse)."""
  out = {}
  for f in item_features:
    spec = raw_spec[f.name]
    column = items[f.name]
    if isinstance(spec, tf.io.VarLenFeature):
      tokens = [[t for t in str(v).split("|") if t] for v in column]
      ragged = tf.ragged.constant(tokens, dtype=tf.string, ragged_rank=1) if any(tokens) else \
          tf.RaggedTensor.from_row_lengths(tf.constant([], tf.string), [0] * len(tokens))
      out[f.name] = ragged.to_sparse()
    else:
      out[f.name] = _column_tensor(column, spec.dtype)
  return out


class ItemTable(tf.Module):
  """Raw item features by item id, so a request needs only the id. Stored in variables
  (not graph constants) so catalogues of millions of items stay within proto limits.
  Unknown ids get a last, empty row: no tokens, and the feature's "unknown" value."""

  def __init__(self, items: pd.DataFrame, raw_spec, item_features: List[feats.Feature]):
    super().__init__()
    ids = items[feats.ITEM_ID].astype(str).tolist()
    self.row_of = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids), tf.range(len(ids), dtype=tf.int64)),
        default_value=len(ids))
    unknown_row = pd.DataFrame([{f.name: _unknown_raw(raw_spec[f.name]) for f in item_features}])
    table = catalogue_raw_features(pd.concat([items, unknown_row], ignore_index=True), raw_spec,
                                   item_features)
    self.dense = {name: tf.Variable(x, trainable=False, name=name)
                  for name, x in table.items() if not isinstance(x, tf.SparseTensor)}
    ragged = {name: tf.RaggedTensor.from_sparse(x) for name, x in table.items()
              if isinstance(x, tf.SparseTensor)}
    self.token_values = {name: tf.Variable(r.values, trainable=False, name=f"{name}_values")
                         for name, r in ragged.items()}
    self.token_splits = {name: tf.Variable(r.row_splits, trainable=False, name=f"{name}_splits")
                         for name, r in ragged.items()}

  def lookup(self, item_id: tf.Tensor) -> Dict[str, object]:
    rows = self.row_of.lookup(item_id)
    out = {name: tf.gather(v, rows) for name, v in self.dense.items()}
    for name, values in self.token_values.items():
      ragged = tf.RaggedTensor.from_row_splits(values, self.token_splits[name])
      out[name] = tf.gather(ragged, rows).to_sparse()
    return out


def _unknown_raw(spec):
  if isinstance(spec, tf.io.VarLenFeature):
    return ""  # no tokens
  return _default_value(spec.dtype) if spec.dtype != tf.int64 else 0


class RawFeatureModule(tf.Module):
  """Turns a request's raw values into model inputs inside the SavedModel: looks up the
  user's features by id, fills what is absent, and runs the Transform graph."""

  def __init__(self, tf_transform_output: tft.TFTransformOutput, all_features,
               users: Optional[pd.DataFrame]):
    super().__init__()
    self.raw_spec = tf_transform_output.raw_feature_spec()
    self.tft_layer = tf_transform_output.transform_features_layer()
    self._user_features = [f for f in feats.by_role(all_features, "user")
                           if f.name != feats.USER_ID]
    self._context = feats.by_role(all_features, "context")
    self.user_tables = self._build_user_tables(users)

  def _build_user_tables(self, users: Optional[pd.DataFrame]):
    tables = {}
    for f in self._user_features:
      dtype = self.raw_spec[f.name].dtype
      keys = tf.constant(users[feats.USER_ID].astype(str).tolist(), tf.string)
      values = _column_tensor(users[f.name], dtype)
      # Unknown users get the most common value of each feature.
      default = users[f.name].mode().iloc[0]
      default = str(default) if dtype == tf.string else default
      tables[f.name] = tf.lookup.StaticHashTable(
          tf.lookup.KeyValueTensorInitializer(keys, values), tf.constant(default, dtype))
    return tables

  def transform(self, provided: Dict[str, object]) -> Dict[str, object]:
    """Raw request columns (user_id required) -> Transform's outputs for the batch."""
    user_id = provided[feats.USER_ID]
    provided = dict(provided)
    for name, table in self.user_tables.items():
      provided[name] = table.lookup(user_id)
    return self.tft_layer(raw_batch(self.raw_spec, provided, tf.size(user_id)))

  def context_specs(self) -> List[tf.TensorSpec]:
    return [tf.TensorSpec([None], self.raw_spec[f.name].dtype, name=f.name)
            for f in self._context]

  def context_names(self) -> List[str]:
    return [f.name for f in self._context]


@dataclasses.dataclass
class TrainingInteractions:
  """The training split's (user id, item id) pairs, as raw id strings."""
  user_ids: np.ndarray
  item_ids: np.ndarray


class EvaluationTables(tf.Module):
  """What the evaluation signature needs besides the model: each user's training items
  (to exclude them from the ranking) and each item's training popularity.

  Popularity is trainer/metrics.py's baseline: counts with ties broken by a seeded
  random fraction, never by item id or position (the RetrievalEvaluator uses the same)."""

  def __init__(self, catalogue_ids: List[str], interactions: TrainingInteractions, seed: int = 0):
    super().__init__()
    row_of_item = {item: i for i, item in enumerate(catalogue_ids)}
    rows = pd.DataFrame({"user": interactions.user_ids,
                         "item": pd.Series(interactions.item_ids).map(row_of_item)}).dropna()
    rows["item"] = rows["item"].astype(np.int64)
    per_user = rows.drop_duplicates().groupby("user")["item"].apply(np.sort)
    users = per_user.index.astype(str).tolist()
    self.user_row = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(users, tf.string),
                                            tf.range(len(users), dtype=tf.int64)),
        default_value=len(users))  # unknown users: the last, empty row
    lists = per_user.tolist() + [np.zeros(0, np.int64)]
    ragged = tf.RaggedTensor.from_row_lengths(
        np.concatenate(lists).astype(np.int64), [len(x) for x in lists])
    self.seen_values = tf.Variable(ragged.values, trainable=False, name="seen_values")
    self.seen_splits = tf.Variable(ragged.row_splits, trainable=False, name="seen_splits")
    counts = np.bincount(rows["item"].to_numpy(), minlength=len(catalogue_ids))
    self.popularity = tf.Variable(metrics.popularity_scores(counts, seed), dtype=tf.float64,
                                  trainable=False, name="popularity")

  def seen_mask(self, user_id: tf.Tensor, num_items: int) -> tf.Tensor:
    """[batch, num_items] booleans: True where the item is in the user's training history."""
    seen = tf.gather(tf.RaggedTensor.from_row_splits(self.seen_values, self.seen_splits),
                     self.user_row.lookup(user_id))
    rows = tf.repeat(tf.range(seen.nrows()), seen.row_lengths())
    indices = tf.stack([rows, seen.values], axis=1)
    return tf.scatter_nd(indices, tf.ones_like(seen.values, tf.bool),
                         tf.stack([seen.nrows(), tf.constant(num_items, tf.int64)]))


def rank_of_targets(scores: tf.Tensor, target: tf.Tensor, excluded: tf.Tensor) -> tf.Tensor:
  """0-based rank of each row's target among the row's items that are not excluded (the
  target itself never is), by trainer/metrics.py's rule, in TensorFlow: items scored
  equal to the target count as ranked above it. A target outside the catalogue (index ==
  num items) ranks last."""
  num_items = tf.shape(scores)[1]
  in_catalogue = target < tf.cast(num_items, target.dtype)
  safe_target = tf.where(in_catalogue, target, tf.zeros_like(target))
  is_target = tf.one_hot(safe_target, num_items, on_value=True, off_value=False)
  target_score = tf.gather(scores, safe_target, batch_dims=1)
  better = tf.logical_and(scores >= target_score[:, None],
                          tf.logical_not(tf.logical_or(excluded, is_target)))
  rank = tf.reduce_sum(tf.cast(better, tf.int64), axis=1)
  return tf.where(in_catalogue, rank, tf.cast(num_items, tf.int64))


class HistoryTable(tf.Module):
  """Each known user's recent item ids (oldest first); unknown users get none."""

  def __init__(self, histories: Dict[str, List[str]]):
    super().__init__()
    users = sorted(histories)
    self.user_row = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(users or [""], tf.string),
                                            tf.range(max(len(users), 1), dtype=tf.int64)),
        default_value=len(users))
    lists = [histories[u] for u in users] + [[]]
    self.values = tf.Variable(tf.constant([i for items in lists for i in items], tf.string),
                              trainable=False, name="history_values")
    self.splits = tf.Variable(np.cumsum([0] + [len(items) for items in lists]),
                              dtype=tf.int64, trainable=False, name="history_splits")

  def lookup(self, user_id: tf.Tensor) -> tf.SparseTensor:
    ragged = tf.RaggedTensor.from_row_splits(self.values, self.splits)
    return tf.gather(ragged, self.user_row.lookup(user_id)).to_sparse()


def history_from_request(history: tf.Tensor) -> tf.SparseTensor:
  """A [batch, length] string matrix, "" as padding on either side, -> the raw sparse
  history (each row's items packed to the left, order kept)."""
  return tf.ragged.boolean_mask(history, tf.not_equal(history, "")).to_sparse()


def first_occurrences(rows: tf.Tensor) -> tf.Tensor:
  """bool [batch, m]: True where a row's value has not appeared earlier in the row."""
  order = tf.argsort(rows, axis=1, stable=True)
  ordered = tf.gather(rows, order, batch_dims=1)
  repeat = tf.concat([tf.zeros_like(ordered[:, :1], tf.bool),
                      tf.equal(ordered[:, 1:], ordered[:, :-1])], axis=1)
  # Back to the original positions: the stable sort put the first occurrence first.
  return tf.logical_not(tf.gather(repeat, tf.argsort(order, axis=1), batch_dims=1))


def rank_in(rows: tf.Tensor, retrieved: tf.Tensor) -> tf.Tensor:
  """float32 [batch, m]: each of `rows`' 1-based position in `retrieved` [batch, k], 0
  where it is absent."""
  equal = tf.equal(rows[:, :, None], retrieved[:, None, :])
  position = tf.cast(tf.argmax(tf.cast(equal, tf.int32), axis=2), tf.float32) + 1.0
  return tf.where(tf.reduce_any(equal, axis=2), position, 0.0)


@dataclasses.dataclass
class Source:
  """One retrieval model inside the exported SavedModel: its towers (query_tower and
  candidate_tower over Transform's output; `exact_search` asks for brute force instead of
  ScaNN) and its candidate tower over the whole catalogue."""
  name: str
  towers: object
  item_table: np.ndarray  # float32 [catalogue, D]


def catalogue_features(tf_transform_output: tft.TFTransformOutput, items: pd.DataFrame,
                       all_features) -> Dict[str, object]:
  """Transform's output for every catalogue item's own features, in catalogue order."""
  raw_spec = tf_transform_output.raw_feature_spec()
  raw_items = catalogue_raw_features(items, raw_spec, feats.candidate_features(all_features))
  return tf_transform_output.transform_features_layer()(raw_batch(raw_spec, raw_items,
                                                                  len(items)))


class RetrievalModule(RawFeatureModule):
  """What gets saved: the Transform layer, the user feature tables, and for each source
  (retrieval model) its query tower, its catalogue embeddings and its top-K index. The
  primary source's index is ScaNN (or brute force, `index_kind`); its order is the
  retrieval order, and the evaluation signatures measure it alone."""

  def __init__(self, tf_transform_output: tft.TFTransformOutput, sources: List[Source],
               primary: int, all_features, items: pd.DataFrame, users: Optional[pd.DataFrame],
               top_k: int, interactions: TrainingInteractions,
               histories: Optional[Dict[str, List[str]]] = None, with_index: bool = True,
               seed: int = 0):
    super().__init__(tf_transform_output, all_features, users)
    # Only when a source reads history (trainer/retrieval_models.py) come histories.
    self.histories = HistoryTable(histories) if histories is not None else None
    self.source_names = [source.name for source in sources]
    self.primary = primary
    self.query_towers = [source.towers.query_tower for source in sources]
    self.item_tables = [tf.Variable(source.item_table, trainable=False,
                                    name=f"item_embeddings_{source.name}") for source in sources]
    self.query_tower = self.query_towers[primary]
    self.item_embedding_table = self.item_tables[primary]
    self.item_ids = tf.Variable(tf.constant(items[feats.ITEM_ID].astype(str).tolist()),
                                trainable=False, name="item_ids")
    exact = [bool(getattr(source.towers, "exact_search", False)) for source in sources]
    settings = {} if exact[primary] else scann_config(len(items), top_k)
    self.config = {"kind": "brute_force" if exact[primary] else "scann", **settings,
                   "sources": self.source_names, "primary": self.source_names[primary]}
    # Read back by the evaluator, which measures ScaNN's recall only where there is ScaNN.
    self.index_kind = tf.Variable(self.config["kind"], trainable=False, name="index_kind")
    self.top_k = top_k
    self.indexes = None
    if with_index:
      rows = tf.range(len(items), dtype=tf.int32)
      k = min(top_k, len(items))
      self.indexes = []
      for table, is_exact in zip(self.item_tables, exact):
        index = (tfrs.layers.factorized_top_k.BruteForce(k=k) if is_exact else
                 tfrs.layers.factorized_top_k.ScaNN(k=k, **scann_config(len(items), top_k)))
        index.index(table, rows)
        self.indexes.append(index)
    catalogue_ids = items[feats.ITEM_ID].astype(str).tolist()
    self.item_row = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(catalogue_ids),
                                            tf.range(len(catalogue_ids), dtype=tf.int64)),
        default_value=len(catalogue_ids))
    self.evaluation = EvaluationTables(catalogue_ids, interactions, seed)

  def evaluate(self, user_id, item_id, context, history=None) -> Dict[str, tf.Tensor]:
    """Full-catalogue ranks of the held-out items, for the model and for popularity:
    ranks [batch, 2] = (model rank, popularity rank), each 0-based among all catalogue
    items minus the user's training items."""
    num_items = int(self.item_embedding_table.shape[0])
    scores = tf.matmul(self._embed_query(user_id, context, history),
                       self.item_embedding_table, transpose_b=True)
    target = self.item_row.lookup(item_id)
    seen = self.evaluation.seen_mask(user_id, num_items)
    popularity = tf.tile(self.evaluation.popularity[None, :], [tf.size(user_id), 1])
    ranks = [rank_of_targets(scores, target, seen), rank_of_targets(popularity, target, seen)]
    return {contract.RANKS: tf.cast(tf.stack(ranks, axis=1), tf.float32)}

  def _features(self, user_id: tf.Tensor, context: Dict[str, tf.Tensor],
                history: Optional[tf.SparseTensor] = None) -> Dict[str, object]:
    provided = {feats.USER_ID: user_id, **context}
    if self.histories is not None:
      provided[feats.HISTORY] = self.histories.lookup(user_id) if history is None else history
    return self.transform(provided)

  def _embed_query(self, user_id: tf.Tensor, context: Dict[str, tf.Tensor],
                   history: Optional[tf.SparseTensor] = None) -> tf.Tensor:
    return self.query_tower(self._features(user_id, context, history), training=False)

  def _top_k(self, user_id, context, history=None):
    scores, rows = self.indexes[self.primary](self._embed_query(user_id, context, history))
    return {contract.ITEM_IDS: tf.gather(self.item_ids, rows), contract.SCORES: scores}

  def _candidates(self, user_id, context, history=None):
    """The union of every source's top-K, by the primary source's score, with every
    source's score of each candidate and its 1-based rank in that source's top-K (0 when
    that source did not retrieve it); duplicates and padding come last, as "" ids."""
    features = self._features(user_id, context, history)
    queries = [tower(features, training=False) for tower in self.query_towers]
    per_source = [index(query)[1] for index, query in zip(self.indexes, queries)]
    rows = tf.concat(per_source, axis=1)  # [batch, sources * k]
    first = first_occurrences(rows)
    scores = tf.stack([tf.einsum("bd,bmd->bm", query, tf.gather(table, rows))
                       for query, table in zip(queries, self.item_tables)], axis=2)
    ranks = tf.stack([rank_in(rows, found) for found in per_source], axis=2)
    primary = tf.where(first, scores[:, :, self.primary], -np.inf)
    order = tf.argsort(primary, axis=1, direction="DESCENDING", stable=True)
    rows, first = tf.gather(rows, order, batch_dims=1), tf.gather(first, order, batch_dims=1)
    ids = tf.where(first, tf.gather(self.item_ids, rows), "")
    return {contract.ITEM_IDS: ids,
            contract.SCORES: tf.gather(primary, order, batch_dims=1),
            contract.SOURCE_SCORES: tf.gather(scores, order, batch_dims=1),
            contract.SOURCE_RANKS: tf.gather(ranks, order, batch_dims=1)}

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    user_spec = tf.TensorSpec([None], tf.string, name=feats.USER_ID)
    context_specs = self.context_specs()
    context_names = self.context_names()

    @tf.function(input_signature=[user_spec])
    def serving_default(user_id):
      return self._top_k(user_id, {})

    @tf.function(input_signature=[user_spec] + context_specs)
    def recommend_with_context(user_id, *context):
      return self._top_k(user_id, dict(zip(context_names, context)))

    @tf.function(input_signature=[user_spec] + context_specs)
    def query_embedding(user_id, *context):
      return {contract.EMBEDDING: self._embed_query(user_id, dict(zip(context_names, context)))}

    @tf.function(input_signature=[])
    def item_embeddings():
      return {contract.ITEM_IDS: tf.identity(self.item_ids),
              contract.EMBEDDINGS: tf.identity(self.item_embedding_table)}

    parse_spec = {name: self.raw_spec[name] for name in [feats.USER_ID, feats.ITEM_ID]
                  + context_names}
    if self.histories is not None:
      parse_spec[feats.HISTORY] = self.raw_spec[feats.HISTORY]

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES)])
    def evaluate_examples(examples):
      # A held-out example's own history: the items before it (never itself).
      parsed = tf.io.parse_example(examples, parse_spec)
      history = parsed.pop(feats.HISTORY, None)
      flat = {name: tf.reshape(x, [-1]) for name, x in parsed.items()}
      return self.evaluate(flat[feats.USER_ID], flat[feats.ITEM_ID],
                           {name: flat[name] for name in context_names}, history)

    history_spec = tf.TensorSpec([None, None], tf.string, name=feats.HISTORY)

    def no_user(history):  # history requests name no user: user features fall back
      return tf.fill([tf.shape(history)[0]], "")

    @tf.function(input_signature=[history_spec] + context_specs)
    def recommend_with_history(history, *context):
      return self._top_k(no_user(history), dict(zip(context_names, context)),
                         history_from_request(history))

    @tf.function(input_signature=[user_spec] + context_specs)
    def candidates_with_context(user_id, *context):
      return self._candidates(user_id, dict(zip(context_names, context)))

    @tf.function(input_signature=[history_spec] + context_specs)
    def candidates_with_history(history, *context):
      return self._candidates(no_user(history), dict(zip(context_names, context)),
                              history_from_request(history))

    @tf.function(input_signature=[])
    def candidate_sources():
      return {contract.SOURCES: tf.constant(self.source_names),
              contract.PRIMARY: tf.constant(self.source_names[self.primary])}

    @tf.function(input_signature=[history_spec] + context_specs)
    def history_embedding(history, *context):
      return {contract.EMBEDDING: self._embed_query(no_user(history), dict(zip(context_names, context)),
                                             history_from_request(history))}

    signatures = {
        contract.QUERY_EMBEDDING: query_embedding.get_concrete_function(),
        contract.ITEM_EMBEDDINGS: item_embeddings.get_concrete_function(),
        contract.EVALUATE_EXAMPLES: evaluate_examples.get_concrete_function(),
    }
    if self.histories is not None:
      signatures[contract.HISTORY_EMBEDDING] = history_embedding.get_concrete_function()
    if self.indexes is not None:
      signatures[contract.DEFAULT_SIGNATURE] = serving_default.get_concrete_function()
      signatures[contract.RECOMMEND_WITH_CONTEXT] = recommend_with_context.get_concrete_function()
      signatures[contract.CANDIDATES_WITH_CONTEXT] = \
          candidates_with_context.get_concrete_function()
      signatures[contract.CANDIDATE_SOURCES] = candidate_sources.get_concrete_function()
      if self.histories is not None:
        signatures[contract.RECOMMEND_WITH_HISTORY] = recommend_with_history.get_concrete_function()
        signatures[contract.CANDIDATES_WITH_HISTORY] = \
            candidates_with_history.get_concrete_function()
    return signatures


class RankingModule(RawFeatureModule):
  """What gets saved for a ranker: the Transform layer, user and item feature tables and
  the model, so a request carries only ids, context and what retrieval said of each
  candidate.

  Signatures:
    serving_default(user_id, item_id, source_scores, source_ranks, <context>) -> scores
        one row per (user, candidate): score a few hundred candidates in one call;
        source_scores / source_ranks [rows, sources] are the candidates_* outputs of the
        retrieval model (schema/export_contract.py)
    score_examples(examples: serialized tf.Example [batch]) -> scores [batch]  (for TFMA)
    candidate_sources() -> sources [S]: the sources the ranker was trained with, in order
  Scores are probabilities.
  """

  def __init__(self, tf_transform_output: tft.TFTransformOutput, all_features,
               items: pd.DataFrame, users: Optional[pd.DataFrame], sources: List[str]):
    super().__init__(tf_transform_output, all_features, users)
    self.items = ItemTable(items, self.raw_spec, feats.candidate_features(all_features))
    self.source_names = list(sources)
    self.model = None

  def attach(self, model):
    self.model = model

  def features(self, user_id, item_id, context: Dict[str, tf.Tensor], source_scores,
               source_ranks) -> Dict[str, tf.Tensor]:
    """The model's inputs for (user, candidate) rows given as raw ids and context."""
    provided = {**self.items.lookup(item_id), feats.USER_ID: user_id, feats.ITEM_ID: item_id,
                **context}
    return {**self.transform(provided), contract.SOURCE_SCORES: source_scores,
            contract.SOURCE_RANKS: source_ranks}

  def _score(self, features) -> Dict[str, tf.Tensor]:
    return {contract.SCORES: tf.sigmoid(self.model(features, training=False))}

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    width = len(self.source_names)
    row_specs = [tf.TensorSpec([None], tf.string, name=feats.USER_ID),
                 tf.TensorSpec([None], tf.string, name=feats.ITEM_ID),
                 tf.TensorSpec([None, width], tf.float32, name=contract.SOURCE_SCORES),
                 tf.TensorSpec([None, width], tf.float32, name=contract.SOURCE_RANKS)]
    context_names = self.context_names()
    example_spec = {name: (tf.io.FixedLenFeature(spec.shape, spec.dtype,
                                                 default_value=[_default_value(spec.dtype)])
                           if isinstance(spec, tf.io.FixedLenFeature) else spec)
                    for name, spec in self.raw_spec.items()}
    source_spec = {name: tf.io.FixedLenFeature([width], tf.float32)
                   for name in (contract.SOURCE_SCORES, contract.SOURCE_RANKS)}

    @tf.function(input_signature=row_specs + self.context_specs())
    def serving_default(user_id, item_id, source_scores, source_ranks, *context):
      return self._score(self.features(user_id, item_id, dict(zip(context_names, context)),
                                       source_scores, source_ranks))

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=contract.EXAMPLES)])
    def score_examples(examples):
      raw = tf.io.parse_example(examples, example_spec)
      sources = tf.io.parse_example(examples, source_spec)
      return self._score({**self.tft_layer(raw), **sources})

    @tf.function(input_signature=[])
    def candidate_sources():
      return {contract.SOURCES: tf.constant(self.source_names)}

    return {contract.RANKING_SIGNATURE: serving_default.get_concrete_function(),
            contract.SCORE_EXAMPLES: score_examples.get_concrete_function(),
            contract.CANDIDATE_SOURCES: candidate_sources.get_concrete_function()}


def save(module, path: str):
  tf.saved_model.save(module, path, signatures=module.signatures(),
                      options=tf.saved_model.SaveOptions(namespace_whitelist=[SCANN_NAMESPACE]))


def export_retrieval_model(serving_dir: str, eval_dir: str, tf_transform_output,
                           sources: List[Source], primary: int, all_features,
                           items: pd.DataFrame, users: Optional[pd.DataFrame], top_k: int,
                           interactions: TrainingInteractions,
                           histories: Optional[Dict[str, List[str]]] = None, seed: int = 0):
  """Two SavedModels: the serving one (every source, with their indexes) and, for TFMA,
  the primary source alone without an index (TFMA's Beam workers load models without
  ScaNN's ops registered; TFX's Evaluator reads <model>/Format-TFMA when it exists).
  `histories` (user id -> recent item ids) only when a source reads history; `seed` of
  the popularity baseline's tie-break."""
  module = RetrievalModule(tf_transform_output, sources, primary, all_features, items, users,
                           top_k, interactions, histories, seed=seed)
  save(module, serving_dir)
  save(RetrievalModule(tf_transform_output, [sources[primary]], 0, all_features, items, users,
                       top_k, interactions, histories, with_index=False, seed=seed), eval_dir)
  return module


def load_model(path: str):
  """Loads an exported SavedModel; ScaNN's ops must be registered first."""
  import scann  # noqa: F401  (registers the Scann ops with TensorFlow)
  return tf.saved_model.load(path)
