"""The `recommender` servable: the whole funnel of serving/funnel.py inside one TF graph,
so one Predict answers a recommendation (in C++ on real TF Serving).

It composes the live retrieval SavedModel and, when the ranking stage is live (a ranker
is served and was trained for the retrieval model's candidate sources), the live ranking
SavedModel, loaded and saved again together with the tables the business rules read:

  1. candidates  retrieval's candidates_with_context / candidates_with_history
  2. seen        drops the user's known interactions (every split) and the request's history
  3. ranking     the ranker's score of every candidate, when the stage is live; without
                 it the retrieval score is the base score
  4. rules       fresh boost (items of the catalogue's newest year: base + boost, or
                 base * (1 + boost)), order by (final, base, retrieval rank), at most
                 `max_per_genre` items per primary genre (0: no cap), the first k

exactly as serving/funnel.py and serving/rules.py do in Python (a test holds them equal).

Signatures (context: the retrieval model's context inputs, e.g. hour, device):
  serving_default(user_id, <context>)           top DEFAULT_K with the default rules
  recommend(user_id, <context>, k, max_per_genre, fresh_boost, boost_mode)
  recommend_with_history(user_id, history, <context>, k, ...)   when retrieval reads
      history: candidates from `history` (item ids, oldest first, "" padding), which also
      counts as seen besides the user's own
  composition()                                 the retrieval and ranking versions composed
Outputs: item_ids [B, k] ("" when fewer pass the rules), retrieval_scores, ranking_scores
(NaN without a ranker), final_scores, retrieval_ranks (1-based).

TF 2.16 saves no default values for signature inputs, so the knobs are inputs of
`recommend` and fixed at DEFAULT_* in serving_default.
"""
import json
import os
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
import tensorflow as tf

from recsys_tfx.schema import canonical
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.trainer import warmup

NO_GENRE = -1


class Tables(tf.Module):
  """What the rules read: each user's seen items, each item's primary genre and
  freshness (released in the catalogue's newest year)."""

  def __init__(self, items: pd.DataFrame, interactions: pd.DataFrame):
    super().__init__()
    ids = items[contract.ITEM_ID].astype(str).tolist()
    genres = [(canonical.parse_genres(g) or ("",))[0]
              for g in items.get("genres", pd.Series([""] * len(items)))]
    names = sorted({g for g in genres if g})
    genre_of = {g: i for i, g in enumerate(names)}
    years = pd.to_numeric(items.get("year", pd.Series([0] * len(items)))).fillna(0).astype(int)
    newest = canonical.newest_year(years)
    self.genre = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(ids), tf.constant([genre_of.get(g, NO_GENRE) for g in genres], tf.int64)),
        NO_GENRE)
    self.fresh = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(ids), tf.constant((years == newest).astype(np.int64).tolist()
                                      if newest is not None else [0] * len(ids), tf.int64)), 0)
    self.num_genres = max(1, len(names))
    grouped = interactions.astype({contract.USER_ID: str, contract.ITEM_ID: str}).groupby(
        contract.USER_ID, sort=True)[contract.ITEM_ID].agg(lambda s: sorted(set(s)))
    users = grouped.index.tolist()
    self.user_row = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
        tf.constant(users or [""]), tf.range(max(1, len(users)), dtype=tf.int64)), len(users))
    lists = grouped.tolist() + [[]]
    self.seen_values = tf.Variable(tf.constant([i for items in lists for i in items], tf.string),
                                   trainable=False, name="seen_values")
    self.seen_splits = tf.Variable(np.cumsum([0] + [len(x) for x in lists]), dtype=tf.int64,
                                   trainable=False, name="seen_splits")

  def seen(self, user_id: tf.Tensor) -> tf.RaggedTensor:
    ragged = tf.RaggedTensor.from_row_splits(self.seen_values, self.seen_splits)
    return tf.gather(ragged, self.user_row.lookup(user_id))


def _in_rows(items: tf.Tensor, sets: tf.RaggedTensor) -> tf.Tensor:
  """bool [B, M]: items[b, m] is one of row b's `sets`."""
  dense = sets.to_tensor(default_value="")
  equal = tf.equal(items[:, :, None], dense[:, None, :]) & tf.not_equal(dense, "")[:, None, :]
  return tf.reduce_any(equal, axis=2)


def cap_per_genre(ordered_genre: tf.Tensor, keep: tf.Tensor, cap: tf.Tensor,
                  num_genres: int) -> tf.Tensor:
  """Walking down each row's order, keeps at most `cap` kept items per genre (genre
  NO_GENRE is not capped; cap 0: no cap): serving/rules.py cap_per_genre."""
  counted = tf.one_hot(tf.where(ordered_genre >= 0, ordered_genre, num_genres), num_genres + 1)
  counted = counted * tf.cast(keep, tf.float32)[:, :, None]
  seen_before = tf.cumsum(counted, axis=1, exclusive=True)
  count = tf.reduce_sum(seen_before * counted, axis=2)  # this item's genre, before it
  within = (count < tf.cast(cap, tf.float32)) | (ordered_genre < 0) | (cap <= 0)
  return keep & within


class Recommender(tf.Module):

  def __init__(self, retrieval, ranking, tables: Tables, composition: Dict[str, object]):
    super().__init__()
    self.retrieval = retrieval
    self.ranking = ranking  # None: the ranking stage is off
    self.tables = tables
    self.composition = dict(composition)
    by_user = retrieval.signatures[contract.CANDIDATES_WITH_CONTEXT]
    self.context_specs = [spec for name, spec in sorted(
        by_user.structured_input_signature[1].items()) if name != contract.USER_ID]
    self.context_names = [spec.name for spec in self.context_specs]
    self.reads_history = contract.CANDIDATES_WITH_HISTORY in retrieval.signatures

  def _rank(self, user_id, context, found, history, k, max_per_genre, fresh_boost,
            boost_mode):
    ids = found[contract.ITEM_IDS]
    batch, width = tf.shape(ids)[0], tf.shape(ids)[1]
    seen = _in_rows(ids, self.tables.seen(user_id))
    if history is not None:
      seen |= _in_rows(ids, tf.RaggedTensor.from_tensor(history))
    keep = tf.not_equal(ids, "") & ~seen
    retrieval = found[contract.SCORES]
    if self.ranking is None:
      ranking = tf.fill(tf.shape(retrieval), np.nan)
      base = retrieval
    else:
      rows = {contract.USER_ID: tf.reshape(tf.repeat(user_id[:, None], width, axis=1), [-1]),
              contract.ITEM_ID: tf.reshape(ids, [-1]),
              contract.SOURCE_SCORES: tf.reshape(found[contract.SOURCE_SCORES],
                                                 [batch * width, -1]),
              contract.SOURCE_RANKS: tf.reshape(found[contract.SOURCE_RANKS],
                                                [batch * width, -1])}
      ranker = self.ranking.signatures[contract.RANKING_SIGNATURE]
      for name in ranker.structured_input_signature[1]:
        if name in context:
          rows[name] = tf.reshape(tf.repeat(context[name][:, None], width, axis=1), [-1])
      ranking = tf.reshape(ranker(**rows)[contract.SCORES], [batch, width])
      base = ranking
    fresh = tf.cast(self.tables.fresh.lookup(ids), tf.float32) > 0
    boosted = tf.where(tf.equal(boost_mode, "multiply"), base * (1.0 + fresh_boost),
                       base + fresh_boost)
    final = tf.where(fresh & tf.not_equal(fresh_boost, 0.0), boosted, base)
    position = tf.range(1, width + 1)[None, :] * tf.ones_like(ids, tf.int32)
    # Order by (final, base, retrieval rank), kept items first: a lexicographic stable
    # sort, least significant key first.
    order = tf.argsort(tf.cast(position, tf.float32), axis=1, stable=True)
    for key in (base, final):
      keyed = tf.where(tf.gather(keep, order, batch_dims=1), tf.gather(key, order, batch_dims=1),
                       -np.inf)
      order = tf.gather(order, tf.argsort(keyed, axis=1, direction="DESCENDING", stable=True),
                        batch_dims=1)
    take = lambda x: tf.gather(x, order, batch_dims=1)
    kept = cap_per_genre(take(self.tables.genre.lookup(ids)), take(keep), max_per_genre,
                         self.tables.num_genres)
    # The kept items, in order, then the rest; the first k.
    survivors = tf.argsort(tf.cast(~kept, tf.int32), axis=1, stable=True)[:, :k]
    pick = lambda x: tf.gather(take(x), survivors, batch_dims=1)
    valid = pick(keep) & tf.gather(kept, survivors, batch_dims=1)
    count = lambda x: tf.reduce_sum(tf.cast(x, tf.int32), axis=1)
    counts = contract.RULE_COUNTS
    return {contract.ITEM_IDS: tf.where(valid, pick(ids), ""),
            contract.RETRIEVAL_SCORES: pick(retrieval), contract.RANKING_SCORES: pick(ranking),
            contract.FINAL_SCORES: tf.where(valid, pick(final), np.nan),
            contract.RETRIEVAL_RANKS: pick(position),
            counts["retrieved"]: count(tf.not_equal(ids, "")),
            counts["seen"]: count(seen & tf.not_equal(ids, "")),
            counts["fresh_boost"]: count(keep & fresh & tf.not_equal(fresh_boost, 0.0)),
            counts["genre_cap"]: count(take(keep) & ~kept)}

  def signatures(self) -> Dict[str, object]:
    names = self.context_names
    user = tf.TensorSpec([None], tf.string, name=contract.USER_ID)
    history = tf.TensorSpec([None, None], tf.string, name=contract.HISTORY)
    knobs = [tf.TensorSpec([], dtype, name=name) for name, dtype in zip(
        contract.RECOMMENDER_KNOBS, (tf.int32, tf.int32, tf.float32, tf.string))]
    by_user = self.retrieval.signatures[contract.CANDIDATES_WITH_CONTEXT]

    def candidates_by_user(user_id, context):
      return by_user(**{contract.USER_ID: user_id, **context})

    @tf.function(input_signature=[user] + self.context_specs)
    def serving_default(user_id, *context):
      context = dict(zip(names, context))
      return self._rank(user_id, context, candidates_by_user(user_id, context), None,
                        contract.DEFAULT_K, contract.DEFAULT_MAX_PER_GENRE, 0.0, "add")

    @tf.function(input_signature=[user] + self.context_specs + knobs)
    def recommend(user_id, *rest):
      context = dict(zip(names, rest[:len(names)]))
      return self._rank(user_id, context, candidates_by_user(user_id, context), None,
                        *rest[len(names):])

    @tf.function(input_signature=[])
    def composition():
      return {name: tf.constant(value) for name, value in self.composition.items()}

    signatures = {contract.DEFAULT_SIGNATURE: serving_default.get_concrete_function(),
                  contract.RECOMMEND: recommend.get_concrete_function(),
                  contract.COMPOSITION: composition.get_concrete_function()}
    if self.reads_history:
      by_history = self.retrieval.signatures[contract.CANDIDATES_WITH_HISTORY]

      @tf.function(input_signature=[user, history] + self.context_specs + knobs)
      def recommend_with_history(user_id, history, *rest):
        context = dict(zip(names, rest[:len(names)]))
        found = by_history(**{contract.HISTORY: history, **context})
        return self._rank(user_id, context, found, history, *rest[len(names):])

      signatures[contract.RECOMMEND_WITH_HISTORY] = recommend_with_history.get_concrete_function()
    return signatures




def sources(model) -> Optional[List[str]]:
  if contract.CANDIDATE_SOURCES not in model.signatures:
    return None
  return [s.decode() for s in
          model.signatures[contract.CANDIDATE_SOURCES]()[contract.SOURCES].numpy()]


def export(retrieval_dir: str, retrieval_version: int, ranking_dir: Optional[str],
           ranking_version: Optional[int], data_dir: str, out_dir: str) -> Dict[str, object]:
  """Composes and saves the recommender servable; returns its composition (which stage
  serves, and why not the ranker when it does not)."""
  import scann  # noqa: F401  (registers the ScaNN ops the retrieval model holds)
  retrieval = tf.saved_model.load(retrieval_dir)
  ranking = tf.saved_model.load(ranking_dir) if ranking_dir else None
  composition = {"retrieval_version": int(retrieval_version),
                 "ranking_version": int(ranking_version) if ranking is not None else -1,
                 "ranking_live": 0, "ranking": "off: no ranking model is served"}
  if ranking is not None:
    if sources(ranking) != sources(retrieval):
      composition["ranking"] = (f"off: ranking v{ranking_version} was trained for candidate "
                                f"sources {sources(ranking)}, retrieval serves "
                                f"{sources(retrieval)}")
      ranking = None
    else:
      composition.update(ranking_live=1,
                         ranking=f"ranking v{ranking_version} re-orders the candidates")
  data = canonical.read_canonical(data_dir)
  module = Recommender(retrieval, ranking, Tables(data.items, data.interactions), composition)
  tf.saved_model.save(module, out_dir, signatures=module.signatures(),
                      options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))
  path = os.path.join(out_dir, contract.COMPOSITION_FILE)
  tf.io.gfile.makedirs(os.path.dirname(path))
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(json.dumps(composition, indent=2))
  users = data.interactions[contract.USER_ID].astype(str).drop_duplicates().head(8).tolist()
  context = {}
  for spec in module.context_specs:  # a context input the data lacks: unknown values
    context[spec.name] = (
        warmup.context_examples(data.interactions, [spec.name])[spec.name]
        if spec.name in data.interactions else
        [contract.UNKNOWN_STRING if spec.dtype == tf.string else contract.UNKNOWN_INT])
  warmup.write_warmup_requests(out_dir, contract.RECOMMENDER_MODEL,
                               contract.DEFAULT_SIGNATURE,
                               warmup.retrieval_warmup_inputs(users, context))
  return composition
