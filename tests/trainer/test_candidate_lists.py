"""The ranker's training lists: the candidate sources never saw the interactions the lists
are made of (the leakage guard), and a list is what the serving funnel builds."""
import numpy as np
import pandas as pd
import pytest

from recsys_tfx.components.ingest import synthetic
from recsys_tfx.trainer import candidate_lists, list_training
from recsys_tfx.trainer.models import baselines, protocol


@pytest.fixture(scope="module")
def split():
  return protocol.make_split(synthetic.generate(**synthetic.TINY, seed=0), seed=0)


class Recording(protocol.Recommender):
  """Remembers every interaction it was fitted on; scores items by a fixed order."""

  name = "recording"

  def fit(self, split, seed=0):
    self.fitted = set(zip(split.fit_users.tolist(), split.fit_items.tolist(),
                          split.fit_times.tolist()))
    self.n_items = split.n_items

  def score(self, split, rows):
    return np.tile(-np.arange(self.n_items, dtype=np.float32), (len(rows), 1))

  def num_parameters(self):
    return 0


class Memoriser(protocol.Recommender):
  """What a leak would look like: scores every (user, item) it was fitted on by how recent
  it was (the latest highest), everything else 0."""

  name = "memoriser"

  def fit(self, split, seed=0):
    self.scores = {}
    for user, item, t in zip(split.fit_users, split.fit_items, split.fit_times):
      self.scores[(int(user), int(item))] = float(t)
    self.n_items = split.n_items

  def score(self, split, rows):
    out = np.zeros((len(rows), self.n_items), np.float32)
    for (user, item), t in self.scores.items():
      out[split.test_users[rows] == user, item] = t
    return out

  def num_parameters(self):
    return 0


def test_held_back_interactions_are_never_fitted_and_come_after_the_fit(split):
  earlier, targets = candidate_lists.hold_back(split, per_user=3)
  fitted = set(zip(earlier.fit_users.tolist(), earlier.fit_items.tolist(),
                   earlier.fit_times.tolist()))
  held = list(zip(targets.users.tolist(), targets.items.tolist()))
  assert len(fitted) + len(held) == len(split.fit_users)
  last_fit = pd.Series(earlier.fit_times).groupby(earlier.fit_users).max()
  for row, (user, item) in enumerate(held):
    # the held-back interaction itself is not in the fit data ...
    times = split.fit_times[(split.fit_users == user) & (split.fit_items == item)]
    assert not any((user, item, int(t)) in fitted for t in times)
    # ... and nothing the sources learn from comes after it
    assert last_fit[user] <= times.min()
    # its history is the user's interactions before it, never itself
    assert item not in targets.histories[row][-1:] or len(targets.histories[row]) == 0
  per_user = pd.Series(targets.users).value_counts()
  assert per_user.max() == 4 and targets.latest.sum() == per_user.size
  # every user with fit data keeps at least one fitted interaction
  assert all(len(earlier.sequences[u]) >= 1 for u in range(split.n_users)
             if len(split.sequences[u]))


def test_lists_come_from_sources_fitted_on_the_earlier_window_only(split):
  earlier, targets = candidate_lists.hold_back(split, per_user=2)
  (source,) = candidate_lists.fit_sources(earlier, [Recording], seed=0)
  everything = set(zip(split.fit_users.tolist(), split.fit_items.tolist(),
                       split.fit_times.tolist()))
  unseen = everything - source.fitted
  assert len(unseen) == len(targets.items)  # exactly the held-back interactions are unseen
  assert {(u, i) for u, i, _ in unseen} == set(zip(targets.users.tolist(),
                                                  targets.items.tolist()))


def test_a_memorising_source_gains_nothing_on_the_lists(split):
  """Were the targets in the fit data, a memoriser would rank them first (the control
  below fits it on everything and does); fitted on the earlier window it cannot."""
  earlier, targets = candidate_lists.hold_back(split, per_user=2)
  popularity = lambda: baselines.Popularity()

  def share_at_the_top(fit_on):
    sources = candidate_lists.fit_sources(fit_on, [Memoriser, popularity], seed=0)
    lists, dropped = candidate_lists.build(earlier, targets, sources, top_k=50,
                                           log=lambda *_: None)
    assert len(lists) + dropped == len(targets.items) and len(lists) > 50
    return np.mean(lists.source_ranks[np.arange(len(lists)), lists.positive, 0] == 1)

  assert share_at_the_top(earlier) < 0.02
  assert share_at_the_top(split) > 0.3  # the leak the guard exists for


def test_a_list_is_the_union_of_each_sources_top_k_minus_the_history(split):
  earlier, targets = candidate_lists.hold_back(split, per_user=1)
  sources = candidate_lists.fit_sources(
      earlier, [lambda: baselines.Popularity(), lambda: baselines.Transitions()], seed=0)
  lists, dropped = candidate_lists.build(earlier, targets, sources, top_k=10, log=lambda *_: None)
  user_index = {user: u for u, user in enumerate(split.user_ids)}
  for n in range(len(lists)):
    items = [i for i in lists.item_ids[n] if i]
    assert len(set(items)) == len(items) <= 20
    ranks = lists.source_ranks[n, :len(items)]
    assert (ranks > 0).any(axis=1).all() and ranks.max() <= 10  # from some source's top 10
    # nothing the user interacted with before (at least their earlier-window items)
    before = set(split.item_ids[earlier.sequences[user_index[lists.user_ids[n]]]].tolist())
    assert not before & set(items)
    assert lists.item_ids[n, lists.positive[n]] != ""
  assert dropped > 0  # a 10-item top-K misses some held-back items, which are not lists


def test_source_stats_and_orders():
  lists = candidate_lists.Lists(
      user_ids=np.array(["u", "v"], object),
      item_ids=np.array([["a", "b", "c"], ["d", "e", ""]], object),
      source_scores=np.array([[[3.0], [1.0], [2.0]], [[5.0], [4.0], [0.0]]], np.float32),
      source_ranks=np.array([[[1.0], [3.0], [2.0]], [[1.0], [0.0], [0.0]]], np.float32),
      positive=np.array([2, 1]), context=pd.DataFrame({"hour": [1, 2]}),
      latest=np.array([True, False]))
  stats = list_training.source_stats(lists)
  np.testing.assert_allclose(stats[:, 0], [3.0, np.std([3, 1, 2, 5, 4])], rtol=1e-6)
  (order,) = list_training.source_orders(lists).values()
  # list 1: "c" is second by the source's score; list 2: "e" was not retrieved, so last
  assert order["hit_rate@10"] == 1.0
  assert order["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1 / np.log2(3)) / 2)
