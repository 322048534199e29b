"""Tiny SavedModels with the pushed models' signatures, for serving tests that need no
pipeline run. Their outputs are simple functions of the inputs, so a test can tell what
the server received:

  retrieval  recommend_with_context(user_id, hour, device) and serving_default(user_id)
             -> item_ids [B, K]: i<(hash(user) + j) % ITEMS>, j = 0..K-1
                scores   [B, K]: hour + 100 * (device == "tv") - j / 100
             candidates_with_context(user_id, hour, device): the same, from one source
             "toy", with source_scores = scores and source_ranks = j + 1 ([B, K, 1])
  ranking    serving_default(user_id, item_id, source_scores, source_ranks, hour, device)
             -> scores [N]: item number / 1000 + (hour + 1) * 10 + (device == "tv")
                (the source inputs are checked for shape only)
  ranking_hour_only  the same without the device input
Every one answers candidate_sources() -> sources ["toy"].
"""
import os

import tensorflow as tf

K = 20
ITEMS = 30
GENRES = ("drama", "comedy", "horror", "kids", "news")


def item_table_rows():
  """Canonical items rows for the toy catalogue: genre by item number, newest year 2024
  for every seventh item."""
  return [{"item_id": f"i{n}", "genres": f"{GENRES[n % len(GENRES)]}|other",
           "title": f"Toy {n}", "year": 2024 if n % 7 == 0 else 2000} for n in range(ITEMS)]


class ToyRetrieval(tf.Module):

  def _top_k(self, user_id, hour, device):
    base = tf.strings.to_hash_bucket_fast(user_id, 1000)[:, None]
    numbers = (base + tf.range(K, dtype=tf.int64)[None, :]) % ITEMS
    item_ids = tf.strings.join(["i", tf.strings.as_string(numbers)])
    offset = tf.cast(hour, tf.float32) + 100.0 * tf.cast(device == "tv", tf.float32)
    scores = offset[:, None] - tf.range(K, dtype=tf.float32)[None, :] / 100.0
    return {"item_ids": item_ids, "scores": scores}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.int64, name="hour"),
                                tf.TensorSpec([None], tf.string, name="device")])
  def recommend_with_context(self, user_id, hour, device):
    return self._top_k(user_id, hour, device)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  def serving_default(self, user_id):
    unknown = tf.fill(tf.shape(user_id), tf.constant(-1, tf.int64))
    return self._top_k(user_id, unknown, tf.fill(tf.shape(user_id), ""))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.int64, name="hour"),
                                tf.TensorSpec([None], tf.string, name="device")])
  def candidates_with_context(self, user_id, hour, device):
    top = self._top_k(user_id, hour, device)
    ranks = tf.tile(tf.range(1.0, K + 1.0)[None, :, None], [tf.shape(user_id)[0], 1, 1])
    return {**top, "source_scores": top["scores"][:, :, None], "source_ranks": ranks}


@tf.function(input_signature=[])
def _sources():
  return {"sources": tf.constant(["toy"]), "primary": tf.constant("toy")}


SOURCE_SPECS = [tf.TensorSpec([None, 1], tf.float32, name="source_scores"),
                tf.TensorSpec([None, 1], tf.float32, name="source_ranks")]


class ToyRanking(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.string, name="item_id")]
               + SOURCE_SPECS + [tf.TensorSpec([None], tf.int64, name="hour"),
                                 tf.TensorSpec([None], tf.string, name="device")])
  def serving_default(self, user_id, item_id, source_scores, source_ranks, hour, device):
    number = tf.strings.to_number(tf.strings.substr(item_id, 1, 10), tf.float32)
    scores = (number / 1000.0 + tf.cast(hour + 1, tf.float32) * 10.0
              + tf.cast(device == "tv", tf.float32))
    return {"scores": scores}


class ToyHourRanking(tf.Module):
  """A ranker that takes fewer context features than retrieval (hour, no device)."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.string, name="item_id")]
               + SOURCE_SPECS + [tf.TensorSpec([None], tf.int64, name="hour")])
  def serving_default(self, user_id, item_id, source_scores, source_ranks, hour):
    return ToyRanking().serving_default(user_id, item_id, source_scores, source_ranks, hour,
                                        tf.fill(tf.shape(hour), ""))


def save_retrieval(path: str) -> str:
  module = ToyRetrieval()
  tf.saved_model.save(module, path, signatures={
      "serving_default": module.serving_default,
      "recommend_with_context": module.recommend_with_context,
      "candidates_with_context": module.candidates_with_context,
      "candidate_sources": _sources})
  return path


def save_ranking(path: str, hour_only: bool = False) -> str:
  module = ToyHourRanking() if hour_only else ToyRanking()
  tf.saved_model.save(module, path, signatures={"serving_default": module.serving_default,
                                                "candidate_sources": _sources})
  return path


def model_base(root: str, version: int = 1) -> str:
  """<root>/retrieval/<v>/, <root>/ranking/<v>/ and <root>/ranking_hour_only/<v>/, TF
  Serving's layout."""
  save_retrieval(os.path.join(root, "retrieval", str(version)))
  save_ranking(os.path.join(root, "ranking", str(version)))
  save_ranking(os.path.join(root, "ranking_hour_only", str(version)), hour_only=True)
  return root
