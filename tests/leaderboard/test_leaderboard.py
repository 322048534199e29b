"""The leaderboard's protocol (split, ranks, metrics), its output, and `recsys benchmark`."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from recsys_tfx.schema import time_split as example_gen
from recsys_tfx.components.ingest import synthetic
from recsys_tfx.schema.canonical import InteractionData
from recsys_tfx.trainer.models import protocol
from recsys_tfx.leaderboard import run as leaderboard_run
from recsys_tfx import cli
from recsys_tfx.leaderboard import scoring
from recsys_tfx.trainer import metrics


def _data(rows, n_items=120):
  interactions = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])
  interactions["hour"] = 0
  interactions["label"] = 1.0
  items = pd.DataFrame({"item_id": [f"i{n}" for n in range(n_items)], "genres": "drama",
                        "title": "", "year": 2000})
  return InteractionData("csv", "interactions", interactions, items)


@pytest.fixture(scope="module")
def tiny():
  return synthetic.generate(**synthetic.TINY, seed=0)


def test_split_is_the_pipelines_split(tiny):
  split = protocol.make_split(tiny, seed=3)
  frame = tiny.interactions.astype({"user_id": str, "item_id": str, "timestamp": str})
  for user, rows in list(frame.groupby("user_id"))[:50]:
    assigned = list(example_gen.assign_splits(rows.to_dict("records"), 3, 3))
    u = int(np.flatnonzero(split.user_ids == user)[0])
    fit = [r["item_id"] for s, r in assigned if s != "test"]
    assert list(split.item_ids[split.sequences[u]]) == fit  # time order kept
    test_rows = np.flatnonzero(split.test_users == u)
    assert [split.item_ids[split.test_items[t]] for t in test_rows] == \
        [r["item_id"] for s, r in assigned if s == "test"]


def test_held_out_item_is_never_in_the_history(tiny):
  split = protocol.make_split(tiny)
  assert len(split.test_users) == split.n_users  # TINY: every user has >= 3 interactions
  for user, item in zip(split.test_users, split.test_items):
    assert item not in split.sequences[user]
  assert len(split.fit_items) + len(split.test_items) == len(tiny.interactions)


def test_split_by_vocabularies_maps_unknown_ids_to_the_last_index(tiny):
  users = sorted(tiny.interactions["user_id"].unique())[:-10]
  items = list(tiny.items["item_id"][:100])
  split = protocol.make_split(tiny, fit_splits=("train",), vocabularies=(users, items))
  assert split.n_items == 101 and split.item_ids[-1] == protocol.UNKNOWN
  assert split.fit_items.max() == 100 and split.fit_users.max() == len(users)
  assert list(split.items["item_id"][:100]) == items  # features follow the vocabulary order
  full = protocol.make_split(tiny)
  assert len(split.fit_items) == len(full.fit_items) - len(full.test_items)  # no eval rows


class _Fixed(protocol.Recommender):
  def __init__(self, scores):
    self.scores = np.asarray(scores, np.float32)

  def fit(self, split, seed=0):
    pass

  def score(self, split, rows):
    return np.tile(self.scores, (len(rows), 1))

  def num_parameters(self):
    return 0


def test_ranks_exclude_seen_items_and_count_ties_against_the_model():
  # u1: i0, i1 fit, i2 held out (timestamps order them).
  data = _data([("u1", "i0", 1), ("u1", "i1", 2), ("u1", "i2", 3)])
  split = protocol.make_split(data)
  negatives = scoring.sampled_negatives(split)
  scores = np.zeros(120)
  scores[[0, 1]] = 10.0  # seen: must not count
  scores[2] = 5.0
  scores[3] = 5.0  # a tie: counts against the model
  scores[4] = 7.0
  ranks = scoring.rank_rows(split, _Fixed(scores), negatives)
  assert ranks.full.tolist() == [2]  # 0-based: items 4 and 3 (the tie) rank above it
  assert metrics.hit_rate(ranks.full, 2) == 0.0 and metrics.hit_rate(ranks.full, 3) == 1.0
  assert metrics.ndcg(ranks.full, 10) == pytest.approx(1 / np.log2(4))
  assert 0 <= ranks.sampled[0] <= 2


def test_sampled_negatives_are_untouched_distinct_and_fixed_by_seed(tiny):
  split = protocol.make_split(tiny)
  negatives = scoring.sampled_negatives(split, seed=1)
  assert negatives.shape == (len(split.test_users), metrics.SAMPLED_NEGATIVES)
  for row, user in enumerate(split.test_users):
    assert len(set(negatives[row])) == metrics.SAMPLED_NEGATIVES
    assert not set(negatives[row]) & (set(split.sequences[user]) | {split.test_items[row]})
  assert np.array_equal(negatives, scoring.sampled_negatives(split, seed=1))


def test_a_model_returning_the_wrong_shape_is_named():
  data = _data([("u1", "i0", 1), ("u1", "i1", 2), ("u1", "i2", 3)])
  split = protocol.make_split(data)
  bad = _Fixed(np.zeros(7))
  bad.name = "broken"
  with pytest.raises(ValueError, match="broken.score returned shape"):
    scoring.rank_rows(split, bad, scoring.sampled_negatives(split))


def test_settings_and_model_names_are_checked():
  assert leaderboard_run.parse_models("ease, sasrec,ease") == ["ease", "sasrec"]
  with pytest.raises(ValueError, match="unknown model"):
    leaderboard_run.parse_models("ease,gpt")
  assert leaderboard_run.parse_settings(["sasrec.epochs=5", "mf.loss=softmax",
                                         "ease.l2=12.5"]) == {
      "sasrec": {"epochs": 5}, "mf": {"loss": "softmax"}, "ease": {"l2": 12.5}}
  for bad in ("sasrec.epochs", "epochs=5", "gpt.layers=2"):
    with pytest.raises(ValueError, match="--set"):
      leaderboard_run.parse_settings([bad])
  with pytest.raises(ValueError, match="--set for itemknn"):
    leaderboard_run.build_model("itemknn", "synthetic", {"no_such_knob": 1}, verbose=False)


def test_benchmark_command_writes_the_leaderboard(tmp_path, capsys):
  out = tmp_path / "board"
  code = cli.main(["benchmark", "--data", "synthetic:3000", "--models",
                   "popularity,itemknn,transitions", "--out", str(out)])
  printed = capsys.readouterr().out
  assert code == 0
  assert "full catalogue" in printed and "sampled (100 neg.)" in printed
  assert "best on full-catalogue NDCG@10" in printed
  frame = pd.read_csv(out / "leaderboard.csv")
  assert list(frame["model"]) == ["popularity", "itemknn", "transitions"]
  assert list(frame.columns) == list(leaderboard_run.COLUMNS)
  assert ((frame["hr@10"] >= 0) & (frame["hr@10"] <= frame["sampled_hr@10"])).all()
  meta = json.loads((out / "leaderboard.json").read_text())
  assert meta["data"] == "synthetic:3000" and len(meta["rows"]) == 3
  assert (out / "leaderboard.png").stat().st_size > 10_000


def test_benchmark_command_rejects_bad_input_in_one_line(tmp_path, capsys):
  assert cli.main(["benchmark", "--models", "popularity,nope"]) == 2
  assert "unknown model" in capsys.readouterr().err
  assert cli.main(["benchmark", "--data", "csv:/no/such/file.csv", "--models",
                   "popularity"]) == 2
  assert "/no/such/file.csv" in capsys.readouterr().err
  assert not os.path.exists("runs/benchmark/csv")
