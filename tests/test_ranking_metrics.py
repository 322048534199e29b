"""The NumPy reference metrics, checked by hand-computed cases."""
import numpy as np
import tensorflow as tf

from components import ranking_metrics as rm
from components import retrieval_evaluator


def test_hit_rate_and_ndcg_from_ranks():
  ranks = np.array([0, 1, 9, 10, 50])
  assert rm.hit_rate(ranks, 10) == 3 / 5
  expected = (1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(11)) / 5
  assert abs(rm.ndcg(ranks, 10) - expected) < 1e-12
  assert rm.hit_rate(ranks, 100) == 1.0


def test_rank_excludes_training_items_but_never_the_target():
  rng = np.random.default_rng(0)
  scores = np.array([[5.0, 4.0, 3.0, 2.0, 1.0]])
  # Target item 2 has two better items; excluding item 0 (seen in training) lifts it to rank 1.
  assert rm.rank_of_target(scores.copy(), np.array([2]), [set()], rng)[0] == 2
  assert rm.rank_of_target(scores.copy(), np.array([2]), [{0, 2}], rng)[0] == 1


def test_ties_are_broken_at_random_not_in_the_targets_favour():
  rng = np.random.default_rng(0)
  scores = np.zeros((2000, 11))  # all tied: the expected rank is 5
  ranks = rm.rank_of_target(scores, np.zeros(2000, dtype=int), [set()] * 2000, rng)
  assert 4.5 < ranks.mean() < 5.5


def test_sampled_negatives_avoid_seen_items():
  rng = np.random.default_rng(0)
  negatives = rm.sampled_negatives(1000, {1, 2, 3}, rng)
  assert len(negatives) == 100 and len(set(negatives)) == 100
  assert not {1, 2, 3} & set(negatives.tolist())
  assert len(rm.sampled_negatives(50, set(range(10)), rng)) == 40



def test_scann_recall_is_computed_in_row_slices_and_counts_overlap():
  rng = np.random.default_rng(1)
  queries = rng.normal(size=(retrieval_evaluator.BATCH * 2 + 7, 8)).astype(np.float32)
  items = rng.normal(size=(50, 8)).astype(np.float32)
  item_ids = np.array([f"i{i}".encode() for i in range(50)], dtype=object)
  order = np.argsort(-(queries @ items.T), axis=1)
  best, worst = order[:, :10], order[:, -10:]

  def returning(found):  # stands in for the ScaNN top-K signature, called per row slice
    return lambda row: {"item_ids": tf.constant(item_ids[found[row.numpy()]])}

  inputs = {"row": np.arange(len(queries))}
  names = [b.decode() for b in item_ids]
  recall = lambda found: retrieval_evaluator.scann_recall_at_10(
      returning(found), inputs, queries, items, names)
  assert recall(best) == 1.0
  assert recall(worst) == 0.0
  assert recall(np.concatenate([best[:, :4], worst[:, :6]], axis=1)) == 0.4
  assert sorted(retrieval_evaluator.top_indices(queries @ items.T, 10)[5]) == sorted(best[5])
