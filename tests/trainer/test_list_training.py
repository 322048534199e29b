"""Every ranking architecture trains on candidate lists (listwise by default, pointwise
as an option) and learns what the lists teach: here, that the held-out item is the one
its source ranked first, and that a few item ids are a bad bet."""
import os

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import list_training
from recsys_tfx.trainer.candidate_lists import Lists
from recsys_tfx.trainer.config import ARCHITECTURES, RankerConfig
from recsys_tfx.trainer.models import rankers

ID_FEATURES = [feats.Feature("user_id", "user", "vocab", "string"),
               feats.Feature("item_id", "item", "vocab", "string"),
               feats.Feature("hour", "context", "int_cat", "int64", 24)]
ITEMS, USERS, LENGTH = 40, 30, 12


class IdModule:
  """Stands in for RankingModule: ids hashed to vocabulary indices, no Transform graph."""
  source_names = ["primary", "second"]

  def features(self, user_id, item_id, context, source_scores, source_ranks):
    return {"user_id": tf.strings.to_hash_bucket_fast(user_id, USERS),
            "item_id": tf.strings.to_hash_bucket_fast(item_id, ITEMS),
            "hour": context["hour"], contract.SOURCE_SCORES: source_scores,
            contract.SOURCE_RANKS: source_ranks}


BANNED = {"i0", "i1", "i2", "i3"}  # never the held-out item


def make_lists(n: int, rng) -> Lists:
  """The held-out item is the primary source's first candidate that is not BANNED."""
  item_ids = np.empty((n, LENGTH), object)
  ranks = np.zeros((n, LENGTH, 2), np.float32)
  positive = np.zeros(n, np.int64)
  for r in range(n):
    items = rng.choice(ITEMS, LENGTH, replace=False)
    item_ids[r] = [f"i{i}" for i in items]
    ranks[r, :, 0] = rng.permutation(LENGTH) + 1
    ranks[r, :, 1] = np.where(rng.random(LENGTH) < 0.5, rng.permutation(LENGTH) + 1, 0)
    order = np.argsort(ranks[r, :, 0])
    positive[r] = next(o for o in order if item_ids[r, o] not in BANNED)
  scores = (LENGTH - ranks) / LENGTH + rng.normal(0, 0.01, ranks.shape).astype(np.float32)
  return Lists(np.array([f"u{r % USERS}" for r in range(n)], object), item_ids,
               scores.astype(np.float32), ranks, positive,
               pd.DataFrame({"hour": rng.integers(0, 24, n)}), np.zeros(n, bool))


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_every_architecture_learns_from_candidate_lists(architecture):
  rng = np.random.default_rng(0)
  train, validation = make_lists(600, rng), make_lists(150, rng)
  model = rankers.build_ranker(RankerConfig(architecture=architecture, embedding_dim=8,
                                            hidden_units=(16,), learning_rate=0.01),
                               ID_FEATURES, {"user_id": USERS, "item_id": ITEMS},
                               source_stats=list_training.source_stats(train))
  trainer = list_training.ListTrainer(IdModule(), model, "listwise", 0.01,
                                      {"hour": tf.int64}, log=lambda *_: None)
  before = trainer.evaluate(validation)["ndcg@10"]
  history = trainer.fit(train, validation, epochs=6, batch_size=32, seed=0)
  after = trainer.evaluate(validation)["ndcg@10"]
  primary = list_training.source_orders(validation)[0]["ndcg@10"]
  assert history["loss"][-1] < history["loss"][0]
  # beats following the primary source: it learned that BANNED items never are
  assert after > before and after > primary, (before, after, primary)


def test_pointwise_training_learns_too_and_padding_never_ranks():
  rng = np.random.default_rng(1)
  train, validation = make_lists(600, rng), make_lists(150, rng)
  validation.item_ids[:, -3:] = ""  # padding: scores -inf, never above the held-out item
  validation.positive = np.minimum(validation.positive, LENGTH - 4)
  model = rankers.build_ranker(RankerConfig(architecture="dcn", embedding_dim=8,
                                            hidden_units=(16,)), ID_FEATURES,
                               {"user_id": USERS, "item_id": ITEMS},
                               source_stats=list_training.source_stats(train))
  trainer = list_training.ListTrainer(IdModule(), model, "pointwise", 0.01,
                                      {"hour": tf.int64}, log=lambda *_: None)
  trainer.fit(train, validation, epochs=6, batch_size=32, seed=0)
  scores = trainer.scores(validation)
  assert np.isneginf(scores[:, -3:]).all()
  assert trainer.evaluate(validation)["ndcg@10"] > 0.7


def test_order_metrics_rank_the_held_out_item_within_its_list():
  scores = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, -np.inf]])
  result = list_training.order_metrics(scores, np.array([2, 0]))
  # list 1: one above (0.9); list 2: a tie counts against it, padding does not
  assert result["ndcg@10"] == pytest.approx(np.mean([1 / np.log2(3), 1 / np.log2(3)]))
