"""Choosing the primary retrieval model by evidence on the eval split."""
import numpy as np
import tensorflow as tf

from recsys_tfx.trainer import selection


def test_the_best_ndcg_wins_then_hit_rate_then_config_order():
  results = {"a": {"ndcg@10": 0.10, "hit_rate@10": 0.3}, "b": {"ndcg@10": 0.12, "hit_rate@10": 0.2},
             "c": {"ndcg@10": 0.12, "hit_rate@10": 0.25}}
  assert selection.choose(results, ["a", "b", "c"]) == "c"
  results["b"]["hit_rate@10"] = 0.25
  assert selection.choose(results, ["a", "b", "c"]) == "b"  # a full tie: the earlier


class _Towers:
  """Query = a fixed vector per user index; the planted model knows each user's item."""

  def __init__(self, queries):
    self.queries = tf.constant(queries, tf.float32)

  def query_tower(self, batch, training=False):
    return tf.gather(self.queries, batch["user_id"])


def test_evaluate_ranks_the_held_out_item_against_the_unseen_catalogue():
  items = np.eye(4, dtype=np.float32)  # item i's embedding is e_i
  rows_of_items = np.array([0, 1, 2, 3, -1])  # vocabulary index -> catalogue row (-1: OOV)
  batch = {"user_id": tf.constant([0, 1, 2]), "item_id": tf.constant([2, 3, 4])}
  knows = _Towers([[0, 0, 1, 0], [1, 0.5, 0, 0.2], [0, 0, 0, 1]])
  result = selection.evaluate(knows, items, [batch], rows_of_items, seen={1: {0}})
  # user 0: item 2 first; user 1: item 3 behind item 1 (item 0 is seen, so not counted);
  # user 2's held-out item is outside the catalogue and not counted
  assert result["users"] == 2
  assert result["hit_rate@10"] == 1.0
  assert result["ndcg@10"] == np.mean([1.0, 1 / np.log2(3)])


def test_selection_is_written_beside_the_model_and_read_back(tmp_path):
  selection.write(str(tmp_path), "transitions", {"transitions": {"ndcg@10": 0.2},
                                                 "popularity": {"ndcg@10": 0.1}})
  back = selection.read(str(tmp_path))
  assert back["chosen"] == "transitions" and set(back["candidates"]) == {"transitions",
                                                                        "popularity"}
  assert selection.read(str(tmp_path / "elsewhere")) == {}
