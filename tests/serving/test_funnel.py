"""The re-ranking rules, the catalogue they read and the funnel's control flow, over a fake
client: pure Python, no TensorFlow, no server."""
import math

import pandas as pd
import pytest

import numpy as np

from recsys_tfx.serving import rules
from recsys_tfx.schema.canonical import parse_genres
from recsys_tfx.serving.catalogue import Catalogue, Item
from recsys_tfx.serving.client import Candidates
from recsys_tfx.serving.funnel import Funnel, FunnelConfig, FunnelError


def cand(item_id, ranking, genre=None, rank=1, retrieval=0.0):
  return rules.Candidate(item_id, rank, retrieval, ranking_score=ranking, genre=genre)


def ids(candidates):
  return [c.item_id for c in candidates]


# --- rules ---------------------------------------------------------------------------------

def test_drop_seen_keeps_order_and_counts():
  candidates = [cand("a", .9), cand("b", .8), cand("c", .7), cand("d", .6)]
  kept, dropped = rules.drop_seen(candidates, {"b", "d", "not-a-candidate"})
  assert ids(kept) == ["a", "c"] and dropped == 2
  kept, dropped = rules.drop_seen(candidates, [])
  assert ids(kept) == ["a", "b", "c", "d"] and dropped == 0


def test_genre_cap_keeps_the_best_of_each_genre():
  ordered = [cand("h1", .9, "horror"), cand("h2", .8, "horror"), cand("k1", .7, "kids"),
             cand("h3", .6, "horror"), cand("x1", .5, None), cand("x2", .4, None),
             cand("x3", .3, None), cand("k2", .2, "kids")]
  kept, dropped = rules.cap_per_genre(ordered, 2)
  assert ids(kept) == ["h1", "h2", "k1", "x1", "x2", "x3", "k2"]  # unknown genre: no cap
  assert dropped == 1
  assert ids(rules.cap_per_genre(ordered, 1)[0]) == ["h1", "k1", "x1", "x2", "x3"]
  assert rules.cap_per_genre(ordered, 0) == (ordered, 0)
  assert rules.cap_per_genre(ordered, None) == (ordered, 0)


def test_additive_fresh_boost_moves_fresh_items_up():
  candidates = [cand("old", .80), cand("new", .75), cand("older", .70)]
  boosted = rules.boost_fresh(candidates, frozenset({"new"}), 0.1, "add")
  assert boosted == 1
  assert [c.final_score for c in candidates] == pytest.approx([.80, .85, .70])
  assert candidates[1].rules == ["fresh_boost(+0.1)"] and candidates[0].rules == []
  assert ids(rules.order(candidates)) == ["new", "old", "older"]


def test_multiplicative_fresh_boost_scales_the_ranking_score():
  candidates = [cand("a", .5), cand("b", .2)]
  rules.boost_fresh(candidates, frozenset({"a", "b"}), 0.5, "multiply")
  assert [c.final_score for c in candidates] == pytest.approx([.75, .30])
  assert candidates[0].rules == ["fresh_boost(x1.5)"]


def test_no_boost_leaves_final_equal_to_ranking():
  candidates = [cand("a", .5)]
  assert rules.boost_fresh(candidates, frozenset({"a"}), 0.0) == 0
  assert candidates[0].final_score == .5 and candidates[0].rules == []


def test_order_breaks_ties_by_ranking_then_retrieval_rank():
  a, b, c = cand("a", .5, rank=3), cand("b", .5, rank=1), cand("c", .6, rank=2)
  for x in (a, b, c):
    x.final_score = .7
  assert ids(rules.order([a, b, c])) == ["c", "b", "a"]


def test_rerank_boosts_orders_caps_and_cuts_to_k():
  ranked = [cand("h1", .90, "horror", 1), cand("h2", .85, "horror", 2),
            cand("h3", .80, "horror", 3), cand("k1", .50, "kids", 4), cand("n1", .40, "news", 5)]
  config = rules.RulesConfig(max_per_genre=2, fresh_boost=1.0)
  top, counts = rules.rerank(ranked, 3, config, fresh=frozenset({"n1"}))
  assert ids(top) == ["n1", "h1", "h2"]
  assert counts == {"fresh_boost": 1, "genre_cap": 1}
  assert top[0].final_score == pytest.approx(1.4) and top[0].ranking_score == .40


def test_configured_fresh_items_replace_the_catalogues():
  ranked = [cand("a", .9), cand("b", .1)]
  config = rules.RulesConfig(fresh_boost=1.0, fresh_items=frozenset({"b"}))
  top, _ = rules.rerank(ranked, 2, config, fresh=frozenset({"a"}))
  assert ids(top) == ["b", "a"]


@pytest.mark.parametrize("kwargs, message", [
    ({"boost_mode": "pow"}, "boost_mode"),
    ({"max_per_genre": -1}, "max_per_genre"),
    ({"boost_mode": "multiply", "fresh_boost": -1.0}, "fresh_boost"),
])
def test_bad_rules_config_is_refused(kwargs, message):
  with pytest.raises(ValueError, match=message):
    rules.RulesConfig(**kwargs)


# --- catalogue -----------------------------------------------------------------------------

def catalogue():
  items = pd.DataFrame([
      {"item_id": "i1", "genres": "horror|comedy", "title": "Scary", "year": 2021},
      {"item_id": "i2", "genres": "unknown", "title": "", "year": 0},
      {"item_id": "i3", "genres": "kids", "title": "Cartoon", "year": 2023},
      {"item_id": "i4", "genres": "kids|music", "title": "Songs", "year": 2023},
  ])
  interactions = pd.DataFrame({"user_id": ["u1", "u1", "u2"], "item_id": ["i1", "i3", "i2"]})
  return Catalogue.from_frames(items, interactions)


def test_catalogue_reads_titles_genres_years_and_seen_items():
  c = catalogue()
  assert c.item("i1") == Item("Scary", ("horror", "comedy"), 2021)
  assert c.item("i1").primary_genre == "horror"
  assert c.item("i2").primary_genre is None  # the canonical "unknown" placeholder
  assert c.item("nope") is None
  assert c.seen("u1") == {"i1", "i3"} and c.seen("stranger") == frozenset()
  assert c.user_ids() == ["u1", "u2"]
  assert c.newest_items() == {"i3", "i4"}
  assert parse_genres("A| B |") == ("A", "B") and parse_genres(None) == ()


def test_catalogue_from_canonical_directory(tmp_path):
  from recsys_tfx.schema import canonical as dataset
  items = pd.DataFrame([{"item_id": "i1", "genres": "drama", "title": "T", "year": 1999},
                        {"item_id": "i2", "genres": "news", "title": "", "year": 2001}])
  interactions = pd.DataFrame({"user_id": ["u1", "u1"], "item_id": ["i1", "i2"],
                               "timestamp": [10, 20]})
  data = dataset.canonicalize("csv", "interactions", interactions, items)
  dataset.write_canonical(data, str(tmp_path / "data"))
  c = Catalogue.from_canonical(str(tmp_path / "data"))
  assert c.item("i1") == Item("T", ("drama",), 1999)
  assert c.seen("u1") == {"i1", "i2"} and c.newest_items() == {"i2"}


# --- the funnel over a fake client ---------------------------------------------------------

class FakeClient:
  """Retrieval returns `top_k` items i0, i1, ... with falling scores (one source, "fake",
  rank = position); ranking scores are given per item (default: the reverse of
  retrieval order). `ranker` None: no ranking model is served; `ranker_sources`: the
  sources the ranker says it was trained for. Records every Predict."""

  retrieval_model, ranking_model = "retrieval", "ranking"

  def __init__(self, top_k=20, ranking=None, ranker=7, ranker_sources=("fake",)):
    self.top_k, self.ranking = top_k, ranking or {}
    self.ranker, self.ranker_sources = ranker, ranker_sources
    self.calls = []

  def check_context(self, context, ranking=True):
    if "weather" in (context or {}):
      raise ValueError("context feature(s) ['weather'] are not inputs of the models")

  def available_version(self, model):
    return 3 if model == self.retrieval_model else self.ranker

  def sources(self, model):
    return ["fake"] if model == self.retrieval_model else list(self.ranker_sources)

  def retrieved(self):
    return [f"i{n}" for n in range(self.top_k)], [1.0 - n / 100 for n in range(self.top_k)]

  def candidates(self, user_id, context=None, strict=True, history=None):
    self.calls.append(("retrieve", user_id, dict(context or {})))
    self.history = history
    item_ids, scores = self.retrieved()
    ranks = [[r + 1.0] for r in range(len(item_ids))]
    return Candidates(item_ids, np.array(scores, np.float32),
                      np.array([[s] for s in scores], np.float32), np.array(ranks, np.float32))

  def score(self, user_id, item_ids, context=None, strict=True, source_scores=None,
            source_ranks=None):
    self.calls.append(("score", user_id, list(item_ids), dict(context or {})))
    self.source_ranks = source_ranks
    return [self.ranking[i] if i in self.ranking else int(i[1:]) / 100 for i in item_ids]


def funnel_catalogue(top_k=20):
  genres = ["drama", "comedy", "horror", "kids"]
  items = pd.DataFrame([{"item_id": f"i{n}", "genres": genres[n % 4], "title": f"T{n}",
                         "year": 2024 if n == 3 else 2000} for n in range(top_k)])
  interactions = pd.DataFrame({"user_id": ["u1"] * 3, "item_id": ["i19", "i18", "i5"]})
  return Catalogue.from_frames(items, interactions)


def test_funnel_ranks_all_unseen_candidates_in_one_call_and_applies_rules():
  client = FakeClient()
  funnel = Funnel(client, funnel_catalogue(), FunnelConfig(
      candidates=300, rules=rules.RulesConfig(max_per_genre=2)))
  rec = funnel.recommend("u1", k=5, context={"hour": 23})
  assert [call[0] for call in client.calls] == ["retrieve", "score"]
  scored = client.calls[1][2]
  assert len(scored) == 17 and not {"i19", "i18", "i5"} & set(scored)
  # each candidate's source rank travels with it past the seen filter
  assert client.source_ranks[:, 0].tolist() == [int(i[1:]) + 1 for i in scored]
  assert client.calls[0][2] == client.calls[1][3] == {"hour": 23}
  # ranking prefers high numbers; the cap allows 2 per genre (n % 4)
  assert ids(rec.items) == ["i17", "i16", "i15", "i14", "i13"]
  assert rec.retrieved == 20 and rec.ranked == 17
  # of the 17 ranked, 4 genres x 2 survive the cap
  assert rec.rule_counts == {"seen": 3, "fresh_boost": 0, "genre_cap": 9}
  first = rec.items[0]
  assert (first.title, first.genre, first.retrieval_rank) == ("T17", "comedy", 18)
  assert first.ranking_score == pytest.approx(.17) == first.final_score
  assert first.retrieval_score == pytest.approx(.83)
  assert set(rec.timings_ms) == {"retrieval", "ranking", "rules", "total"}


def test_funnel_genre_cap_and_fresh_boost_from_the_catalogue():
  funnel = Funnel(FakeClient(), funnel_catalogue(), FunnelConfig(
      rules=rules.RulesConfig(max_per_genre=1, fresh_boost=1.0)))
  rec = funnel.recommend("u1", k=4)
  assert ids(rec.items)[0] == "i3"  # the newest item, boosted from the bottom
  assert rec.items[0].rules == ["fresh_boost(+1)"]
  genres = [c.genre for c in rec.items]
  assert len(genres) == len(set(genres)) == 4


def test_funnel_uses_at_most_the_configured_candidates():
  client = FakeClient(top_k=20)
  rec = Funnel(client, config=FunnelConfig(candidates=8)).recommend("u", k=3)
  assert rec.retrieved == 8 and client.calls[1][2] == [f"i{n}" for n in range(8)]


def test_explicit_seen_set_replaces_the_catalogues():
  client = FakeClient(top_k=5)
  rec = Funnel(client, funnel_catalogue(5)).recommend("u1", k=3, seen={"i4", "i3"})
  assert ids(rec.items) == ["i2", "i1", "i0"]


def test_history_goes_to_retrieval_and_its_items_count_as_seen():
  client = FakeClient(top_k=5)
  rec = Funnel(client, funnel_catalogue(5)).recommend("u1", k=3, seen=set(),
                                                       history=["i4", "i2"])
  assert client.history == ["i4", "i2"]
  assert ids(rec.items) == ["i3", "i1", "i0"]


def test_cold_start_user_gets_recommendations():
  client = FakeClient()
  rec = Funnel(client, funnel_catalogue()).recommend("never-seen-before", k=10)
  assert len(rec.items) == 10 and rec.rule_counts["seen"] == 0


def test_user_who_saw_everything_gets_an_empty_list_not_an_error():
  client = FakeClient(top_k=4)
  rec = Funnel(client).recommend("u", k=2, seen={"i0", "i1", "i2", "i3"})
  assert rec.items == [] and rec.ranked == 0


def test_duplicate_and_empty_candidate_ids_are_dropped():
  class Repeating(FakeClient):
    def retrieved(self):
      return ["a", "b", "a", "", "c"], [.9, .8, .7, .6, .5]

  funnel = Funnel(Repeating(ranking={"a": .1, "b": .2, "c": .3}))
  rec = funnel.recommend("u", k=5)
  assert sorted(ids(rec.items)) == ["a", "b", "c"] and rec.retrieved == 3


@pytest.mark.parametrize("k, message", [
    (0, "k must be a positive integer"), (-3, "k must be a positive integer"),
    (2.5, "k must be a positive integer"), (1001, "exceeds the 1000 candidates the funnel"),
    (21, "exceeds the 20 candidates the retrieval model returns"),
])
def test_k_out_of_range_is_a_clear_error(k, message):
  with pytest.raises(FunnelError, match=message):
    Funnel(FakeClient(top_k=20)).recommend("u", k=k)


def test_recommendation_serialises_to_plain_json():
  import json
  rec = Funnel(FakeClient(), funnel_catalogue()).recommend("u1", k=2, context={"hour": 1})
  out = json.loads(json.dumps(rec.to_dict()))
  assert set(out["items"][0]) == {"item_id", "title", "genre", "retrieval_rank",
                                  "retrieval_score", "ranking_score", "final_score", "rules"}
  assert out["stages"]["ranking_live"] is True
  assert out["context"] == {"hour": 1} and not math.isnan(out["items"][0]["final_score"])


def test_context_no_model_takes_is_refused_before_any_predict():
  client = FakeClient()
  with pytest.raises(ValueError, match="weather"):
    Funnel(client).recommend("u", k=3, context={"weather": "rain"})
  assert client.calls == []


def test_without_a_served_ranker_the_retrieval_order_is_served_and_said():
  client = FakeClient(ranker=None)
  rec = Funnel(client, funnel_catalogue(), FunnelConfig(
      rules=rules.RulesConfig(max_per_genre=0))).recommend("u1", k=4)
  assert [call[0] for call in client.calls] == ["retrieve"]  # no ranking Predict
  assert ids(rec.items) == ["i0", "i1", "i2", "i3"] and rec.ranked == 0
  assert all(math.isnan(c.ranking_score) for c in rec.items)
  assert rec.items[0].final_score == pytest.approx(1.0)  # the retrieval score
  assert not rec.stages.ranking_live and "retrieval order is served" in rec.stages.ranking
  assert rec.to_dict()["items"][0]["ranking_score"] is None


def test_a_ranker_trained_for_other_sources_is_not_used():
  client = FakeClient(ranker_sources=("sasrec", "transitions"))
  rec = Funnel(client, funnel_catalogue()).recommend("u1", k=3)
  assert [call[0] for call in client.calls] == ["retrieve"]
  assert "trained for candidate sources ['sasrec', 'transitions']" in rec.stages.ranking
  assert "serves ['fake']" in rec.stages.ranking


def test_rank_false_measures_the_retrieval_order_even_with_a_ranker_served():
  client = FakeClient()
  rec = Funnel(client, funnel_catalogue(), rank=False).recommend("u2", k=3)
  assert ids(rec.items) == ["i0", "i1", "i2"] and rec.stages.ranking.startswith("off")
