"""The leaderboard's baselines (leaderboard/baselines.py, leaderboard/factorization.py):
the scoring contract, training progress, beating popularity on planted data, and small
hand-made cases whose answer is known."""
import numpy as np
import pandas as pd
import pytest

from recsys_tfx.components.ingest import synthetic
from recsys_tfx.trainer.models import baselines, factorization, ncf, protocol
from recsys_tfx.leaderboard import scoring
from recsys_tfx.trainer import metrics


def _models():
  """Every model, with short training for the learned ones (contract tests only)."""
  return [
      baselines.Popularity(), baselines.ItemKNN(), baselines.EASE(), baselines.Transitions(),
      factorization.MatrixFactorization(loss="bpr", epochs=5),
      factorization.MatrixFactorization(loss="softmax", epochs=5, batch_size=256),
      factorization.LightGCN(epochs=5, batch_size=512),
      ncf.NCF(epochs=3),
  ]


@pytest.fixture(scope="module")
def tiny():
  return protocol.make_split(synthetic.generate(**synthetic.TINY, seed=0), seed=0)


@pytest.fixture(scope="module")
def bigger():
  data = synthetic.generate(n_users=1000, n_items=600, interactions_per_user=30, seed=0)
  return protocol.make_split(data, seed=0)


def _full_hit_rate(split, model, seed=0):
  model.fit(split, seed=seed)
  ranks = scoring.rank_rows(split, model, scoring.sampled_negatives(split, seed=0))
  return metrics.hit_rate(ranks.full, 10)


@pytest.mark.parametrize("model", _models(), ids=lambda m: f"{m.name}-{getattr(m, 'loss', '')}")
def test_scores_every_item_for_every_row(tiny, model):
  model.fit(tiny, seed=0)
  rows = np.arange(7, 27)
  scores = model.score(tiny, rows)
  assert scores.shape == (len(rows), tiny.n_items)
  assert scores.dtype == np.float32
  assert np.isfinite(scores).all()
  assert model.num_parameters() > 0


@pytest.mark.parametrize("model", [
    factorization.MatrixFactorization(loss="bpr", epochs=8),
    factorization.MatrixFactorization(loss="softmax", epochs=8, batch_size=256),
    factorization.LightGCN(epochs=8, batch_size=512),
    factorization.LightGCN(epochs=8, batch_size=512, loss="softmax"),
], ids=["mf-bpr", "mf-softmax", "lightgcn", "lightgcn-softmax"])
def test_training_loss_decreases(tiny, model):
  model.fit(tiny, seed=0)
  losses = model.loss_history
  assert len(losses) == 8 and np.isfinite(losses).all()
  assert losses[-1] < 0.9 * losses[0], losses
  # Exported embeddings score exactly like the model does (inner product).
  rows = np.arange(5)
  users = model.user_embeddings()[tiny.test_users[rows]]
  np.testing.assert_allclose(users @ model.item_embeddings().T, model.score(tiny, rows),
                             rtol=1e-5, atol=1e-5)


def test_ncf_learns_and_scores_through_its_network(tiny):
  model = ncf.NCF(epochs=8)
  model.fit(tiny, seed=0)
  assert model.loss_history[-1] < 0.8 * model.loss_history[0], model.loss_history
  rows = np.arange(3)
  scores = model.score(tiny, rows)
  user, items = tiny.test_users[1], np.array([0, 5, 17])
  direct = model._logits(np.full(3, user), items).numpy()
  np.testing.assert_allclose(scores[1, items], direct, rtol=1e-5, atol=1e-6)
  with pytest.raises(NotImplementedError, match="not by an inner product"):
    model.item_embeddings()


# Full-catalogue HR@10 on synthetic 1000 users x 600 items x 30, split seed 0, measured
# on data seeds 0 / 1 / 2 (popularity: 0.132 / 0.163 / 0.138):
#   itemknn 0.221 / 0.239 / 0.198      gap 0.089 / 0.076 / 0.060
#   ease    0.288 / 0.313 / 0.266      gap 0.156 / 0.150 / 0.128
#   transitions 0.327 / 0.370 / 0.311  gap 0.195 / 0.207 / 0.173
#   mf softmax, 10 epochs 0.226 / 0.251 / 0.227   gap 0.094 / 0.088 / 0.089
#   mf bpr, 30 epochs     0.209 / 0.217 / 0.207   gap 0.077 / 0.054 / 0.069
#   lightgcn, 30 epochs   0.250 / 0.246 / 0.229   gap 0.118 / 0.083 / 0.091
#   lightgcn softmax, 30  0.250 / 0.267 / 0.239   gap 0.118 / 0.104 / 0.101
# Each required margin is about half the smallest measured gap.
@pytest.mark.parametrize("model,margin", [
    (baselines.ItemKNN(), 0.03),
    (baselines.EASE(), 0.06),
    (baselines.Transitions(), 0.08),
    (factorization.MatrixFactorization(loss="softmax", epochs=10), 0.04),
    (factorization.MatrixFactorization(loss="bpr"), 0.025),
    (factorization.LightGCN(epochs=30), 0.04),
    (factorization.LightGCN(epochs=30, loss="softmax"), 0.05),
], ids=["itemknn", "ease", "transitions", "mf-softmax", "mf-bpr", "lightgcn",
        "lightgcn-softmax"])
def test_beats_popularity(bigger, model, margin):
  popularity = _full_hit_rate(bigger, baselines.Popularity())
  assert _full_hit_rate(bigger, model) > popularity + margin


def test_ease_refuses_a_catalogue_over_max_items(tiny):
  with pytest.raises(ValueError, match=r"dense 300 x 300 item-item inverse: 90,000 floats"):
    baselines.EASE(max_items=299).fit(tiny)


def _toy_split(histories, n_items):
  """A Split from hand-written per-user histories (time order); every user is a test row,
  with a dummy held-out item that no model may read."""
  users = np.repeat(np.arange(len(histories)), [len(h) for h in histories]).astype(np.int64)
  items = np.concatenate(histories).astype(np.int64)
  return protocol.Split(
      user_ids=np.array([f"u{u}" for u in range(len(histories))], dtype=object),
      item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
      fit_users=users, fit_items=items, fit_times=np.arange(len(items), dtype=np.int64),
      fit_context=pd.DataFrame(index=range(len(items))),
      sequences=[np.asarray(h, np.int64) for h in histories],
      test_users=np.arange(len(histories), dtype=np.int64),
      test_items=np.zeros(len(histories), np.int64),
      test_context=pd.DataFrame(index=range(len(histories))),
      items=pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)]}), users=None)


def test_transitions_ranks_the_known_next_item_first():
  # 1 is always followed by 2; item 6 is the most popular but never follows 1.
  split = _toy_split([[0, 1, 2], [3, 1, 2], [4, 1, 2], [6, 7], [6, 8], [6, 0], [5, 1], [9]],
                     n_items=10)
  model = baselines.Transitions()
  model.fit(split)
  scores = model.score(split, np.array([6]))[0]
  scores[[5, 1]] = -np.inf  # the user's own history is excluded by the protocol
  assert np.argmax(scores) == 2
  # Item 9 never led anywhere, so its user gets the popularity tie-breaker alone.
  counts = np.bincount(split.fit_items, minlength=10)
  np.testing.assert_allclose(model.score(split, np.array([7]))[0], 1e-6 * counts / counts.max())


@pytest.mark.parametrize("model", [baselines.ItemKNN(), baselines.EASE(l2=1.0)],
                         ids=["itemknn", "ease"])
def test_co_occurring_item_ranks_above_an_unrelated_one(model):
  # Items 0 and 1 are watched together; 2 and 3 go together but never with 0 or 1.
  split = _toy_split([[0, 1], [0, 1], [1, 0], [0, 1, 4], [2, 3], [2, 3], [3, 2], [2, 3, 4],
                      [0]], n_items=5)
  model.fit(split)
  scores = model.score(split, np.array([8]))[0]  # the last user has only item 0
  assert scores[1] > scores[2] and scores[1] > scores[3]


def test_popularity_ranks_by_fit_counts():
  split = _toy_split([[0, 1], [1, 2], [1]], n_items=4)
  model = baselines.Popularity()
  model.fit(split)
  np.testing.assert_array_equal(model.score(split, np.array([0, 2])),
                                [[1, 3, 1, 0]] * 2)
