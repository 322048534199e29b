"""Negative sampling for the rankers: counts, labels, and no seen item as a negative."""
import tensorflow as tf

from recsys_tfx.trainer.ranking_data import NegativeSampler, pair_keys, positive_pairs_table


def _catalogue(n):
  genres = tf.ragged.constant([[i % 3, (i + 1) % 3] for i in range(n)], dtype=tf.int64)
  return {"item_id": tf.range(n, dtype=tf.int64), "genres": genres.to_sparse(),
          "year": tf.linspace(-1.0, 1.0, n)}


def _positives(users, items):
  n = len(users)
  return {"user_id": tf.constant(users, tf.int64), "hour": tf.constant([7] * n, tf.int64),
          "item_id": tf.constant(items, tf.int64),
          "genres": tf.ragged.constant([[items[i] % 3] for i in range(n)], dtype=tf.int64).to_sparse(),
          "year": tf.zeros([n])}


def test_negatives_keep_user_and_context_and_never_reuse_seen_items():
  tf.random.set_seed(0)
  n_items = 6
  users, items = [0, 0, 0, 1], [0, 1, 2, 3]  # user 0 has seen items 0, 1, 2
  positives = _positives(users, items)
  seen = positive_pairs_table(tf.data.Dataset.from_tensors(positives), n_items + 1)
  sampler = NegativeSampler(_catalogue(n_items), ["item_id", "genres", "year"], ratio=50,
                            seen_pairs=seen, num_item_indices=n_items + 1)
  features, labels = sampler(positives)
  labels = labels.numpy()
  assert labels[:4].tolist() == [1, 1, 1, 1] and set(labels[4:].tolist()) == {0.0}
  assert 100 < len(labels) - 4 <= 200  # some draws were dropped as seen
  users_out = features["user_id"].numpy()[4:]
  items_out = features["item_id"].numpy()[4:]
  for user, item in zip(users_out, items_out):
    assert not (user == 0 and item in (0, 1, 2))
  assert (features["hour"].numpy() == 7).all()
  # Item content travels with the sampled item: genres of catalogue row i are [i%3, (i+1)%3].
  genres = tf.sparse.to_dense(features["genres"], default_value=-1).numpy()[4:]
  for item, row in zip(items_out, genres):
    assert row.tolist() == [item % 3, (item + 1) % 3]


def test_pair_keys_are_unique_per_pair():
  keys = pair_keys(tf.constant([0, 0, 1]), tf.constant([1, 2, 1]), 3).numpy()
  assert len(set(keys.tolist())) == 3


def test_sampling_probabilities():
  from recsys_tfx.trainer.ranking_data import sampling_probabilities
  counts = [0, 1, 8]
  assert sampling_probabilities("uniform", counts) is None
  popularity = sampling_probabilities("popularity", counts)
  assert popularity.tolist() == [1 / 12, 2 / 12, 9 / 12]  # +1 keeps cold items drawable
  mixed = sampling_probabilities("mixed", counts)
  assert abs(mixed.sum() - 1) < 1e-12 and abs(mixed[0] - (0.5 / 12 + 0.5 / 3)) < 1e-12
  import pytest
  with pytest.raises(ValueError, match="'hard'"):
    sampling_probabilities("hard", counts)
