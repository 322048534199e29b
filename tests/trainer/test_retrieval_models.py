"""trainer/retrieval_models.py: the leaderboard's baselines wrapped as the pipeline's query
and candidate towers. query . candidate must be exactly the leaderboard's score, read from
Transform's history window (trainer/preprocessing.py history_window) as the pipeline
feeds it."""
import numpy as np
import pytest
import tensorflow as tf

from recsys_tfx.components.ingest import synthetic
from recsys_tfx.trainer.models import baselines, protocol
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import registry, retrieval_models
from recsys_tfx.trainer.preprocessing import history_window


@pytest.fixture(scope="module")
def tiny():
  return protocol.make_split(synthetic.generate(**synthetic.TINY, seed=0), seed=0)


def _transformed(split, rows, length):
  """What Transform hands the query tower for held-out rows: ids and the history window."""
  histories = split.histories(split.test_users[rows])
  sparse = tf.ragged.constant([h.tolist() for h in histories], dtype=tf.int64).to_sparse()
  return {feats.USER_ID: tf.constant(split.test_users[rows]),
          feats.HISTORY: history_window(sparse, length)}


def _tower_scores(towers, split, rows, length):
  queries = towers.query_tower(_transformed(split, rows, length)).numpy()
  candidates = towers.candidate_tower({feats.ITEM_ID: tf.range(split.n_items)}).numpy()
  return queries @ candidates.T


@pytest.mark.parametrize("model", [baselines.ItemKNN(), baselines.EASE(l2=50.0),
                                   baselines.Transitions(), baselines.Popularity()],
                         ids=lambda m: m.name)
def test_towers_score_exactly_as_the_leaderboard(tiny, model):
  model.fit(tiny)
  towers = retrieval_models.wrap(model.name, model, tiny)
  assert towers.exact_search  # catalogue-long vectors: brute force, not ScaNN
  rows = np.arange(40)
  longest = max(len(h) for h in tiny.histories(tiny.test_users[rows]))
  np.testing.assert_allclose(_tower_scores(towers, tiny, rows, longest),
                             model.score(tiny, rows), rtol=1e-5, atol=1e-6)


def test_a_window_shorter_than_the_history_reads_the_latest_items(tiny):
  model = baselines.EASE(l2=50.0)
  model.fit(tiny)
  towers = retrieval_models.wrap("ease", model, tiny)
  row = int(np.argmax([len(h) for h in tiny.histories(tiny.test_users)]))
  latest = tiny.histories(tiny.test_users[[row]])[0][-5:]
  expected = np.zeros(tiny.n_items, np.float32)
  expected[np.unique(latest)] = 1
  expected = expected @ model.item_item_matrix() + model.tie_breaker * model.popularity
  np.testing.assert_allclose(_tower_scores(towers, tiny, np.array([row]), 5)[0], expected,
                             rtol=1e-5, atol=1e-6)


def test_no_history_ranks_by_popularity(tiny):
  model = baselines.ItemKNN()
  model.fit(tiny)
  towers = retrieval_models.wrap("itemknn", model, tiny)
  empty = {feats.USER_ID: tf.constant([0]), feats.HISTORY: tf.fill([1, 4], tf.constant(-1, tf.int64))}
  scores = towers.query_tower(empty).numpy() @ towers.candidate_tower(
      {feats.ITEM_ID: tf.range(tiny.n_items)}).numpy().T
  assert np.argmax(scores[0]) == np.argmax(model.popularity)
  assert scores.max() > 0


def test_too_large_a_catalogue_is_refused_with_the_reason(tiny, monkeypatch):
  model = baselines.Transitions()
  model.fit(tiny)
  monkeypatch.setattr(retrieval_models, "MAX_ITEM_ITEM_ITEMS", tiny.n_items - 1)
  with pytest.raises(ValueError, match="dense .* item-item table"):
    retrieval_models.wrap("transitions", model, tiny)


def test_baselines_train_without_epochs_or_verbose(tiny):
  towers, fitted = retrieval_models.train("ease", tiny, {"l2": 10.0}, history_length=20, seed=0,
                                          epochs_override=0)
  assert fitted.l2 == 10.0 and towers.exact_search
  with pytest.raises(ValueError, match="ease has no parameter"):
    registry.check_args("ease", {"epochs": 3})
