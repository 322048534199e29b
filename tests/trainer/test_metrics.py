"""The one metrics module (trainer/metrics.py), checked by hand-computed cases, and the
SavedModel's TensorFlow ranks checked against it."""
import numpy as np
import tensorflow as tf

from recsys_tfx.trainer import metrics as rm
from recsys_tfx.components.retrieval_evaluator import executor as retrieval_evaluator


def test_hit_rate_and_ndcg_from_ranks():
  ranks = np.array([0, 1, 9, 10, 50])
  assert rm.hit_rate(ranks, 10) == 3 / 5
  expected = (1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(11)) / 5
  assert abs(rm.ndcg(ranks, 10) - expected) < 1e-12
  assert rm.hit_rate(ranks, 100) == 1.0


def test_rank_excludes_training_items_but_never_the_target():
  scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
  # Target item 2 has two better items; excluding item 0 (seen in training) lifts it to rank 1.
  assert rm.rank_of_target(scores, np.array([2]), [set()])[0] == 2
  assert rm.rank_of_target(scores, np.array([2]), [{0, 2}])[0] == 1


def test_ties_count_against_the_target():
  scores = np.zeros((3, 11))  # all tied: every other item counts as above the target
  assert rm.rank_of_target(scores, np.zeros(3, dtype=int), [set()] * 3).tolist() == [10] * 3
  assert rm.rank_in_list(np.array([[1.0, 1.0, 0.5, 2.0]])).tolist() == [2]
  nan = np.array([[np.nan, 0.0, -1.0]])  # a NaN target never ranks above anything
  assert rm.rank_of_target(nan, np.array([0]), [set()])[0] == 2


def test_popularity_ties_are_broken_by_a_seeded_jitter_below_one():
  counts = np.array([3, 3, 3, 1, 0])
  scores = rm.popularity_scores(counts, seed=0)
  assert np.array_equal(np.floor(scores), counts) and len(set(scores)) == 5
  assert np.array_equal(scores, rm.popularity_scores(counts, seed=0))
  assert not np.array_equal(scores, rm.popularity_scores(counts, seed=1))


def test_sampled_negatives_avoid_seen_items():
  rng = np.random.default_rng(0)
  negatives = rm.sampled_negatives(1000, {1, 2, 3}, rng)
  assert len(negatives) == 100 and len(set(negatives)) == 100
  assert not {1, 2, 3} & set(negatives.tolist())
  assert len(rm.sampled_negatives(50, set(range(10)), rng)) == 40



def test_scann_hits_count_the_overlap_with_the_exact_top_10():
  rng = np.random.default_rng(1)
  queries = rng.normal(size=(40, 8)).astype(np.float32)
  items = rng.normal(size=(50, 8)).astype(np.float32)
  item_ids = np.array([f"i{i}".encode() for i in range(50)], dtype=object)
  scores = queries @ items.T
  order = np.argsort(-scores, axis=1)
  best, worst = order[:, :10], order[:, -10:]

  def returning(found):  # stands in for the ScaNN top-K signature
    return lambda row: {"item_ids": tf.constant(item_ids[found[row.numpy()]])}

  names = [b.decode() for b in item_ids]
  hits = lambda found: retrieval_evaluator.scann_hits_at_10(
      returning(found), {"row": np.arange(len(queries))}, scores, names)
  assert hits(best) == 400
  assert hits(worst) == 0
  assert hits(np.concatenate([best[:, :4], worst[:, :6]], axis=1)) == 160
  assert sorted(retrieval_evaluator.top_indices(scores, 10)[5]) == sorted(best[5])


def test_saved_model_ranks_count_ties_against_the_target():
  from recsys_tfx.trainer.export import rank_of_targets
  scores = tf.constant([[3.0, 5.0, 5.0, 1.0],    # target 1 ties with item 2
                        [3.0, 5.0, 5.0, 1.0],    # target 1; item 2 excluded
                        [3.0, 5.0, 5.0, 1.0],    # target 3, itself marked excluded
                        [3.0, 5.0, 5.0, 1.0]])   # target outside the catalogue
  target = tf.constant([1, 1, 3, 4], tf.int64)
  excluded = tf.constant([[False] * 4, [False, False, True, False],
                          [False, False, False, True], [False] * 4])
  assert rank_of_targets(scores, target, excluded).numpy().tolist() == [1, 0, 3, 4]
  # The NumPy module, given the same rows, agrees (the last target is outside the catalogue).
  exclude = [np.flatnonzero(row) for row in excluded.numpy()[:3]]
  assert rm.rank_of_target(scores.numpy()[:3], target.numpy()[:3], exclude).tolist() == [1, 0, 3]


def test_saved_model_ranks_equal_the_metrics_module_on_random_ties():
  from recsys_tfx.trainer.export import rank_of_targets
  rng = np.random.default_rng(3)
  scores = rng.integers(0, 4, size=(50, 30)).astype(np.float32)  # many ties
  target = rng.integers(0, 30, size=50)
  excluded = rng.random((50, 30)) < 0.2
  expected = rm.rank_of_target(scores, target, [np.flatnonzero(row) for row in excluded])
  got = rank_of_targets(tf.constant(scores), tf.constant(target, tf.int64),
                        tf.constant(excluded)).numpy()
  assert got.tolist() == expected.tolist()
