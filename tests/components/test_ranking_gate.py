"""The RankingGate's decision: a ranker serves only if it beats the retrieval order (and
the last blessed ranker) on the held-out lists, and its candidates are served."""
import numpy as np
import pytest

from recsys_tfx.components.ranking_gate import executor as gate
from recsys_tfx.components.ranking_gate.component import RankingGate


def results(ranker, retrieval, last=None):
  out = {"lists/ranker/ndcg@10": ranker, "lists/retrieval/ndcg@10": retrieval,
         "rerank_lift@10": ranker - retrieval}
  if last is not None:
    out["lists/last_blessed_ranker/ndcg@10"] = last
  return out


def test_a_ranker_worse_than_the_retrieval_order_is_refused_with_the_figures():
  reasons = gate.judge(results(0.10, 0.12), True, 0.0, 0.0)
  assert len(reasons) == 1 and "0.1000 vs the retrieval order's 0.1200" in reasons[0]
  assert "lift -0.0200, required > +0.0000" in reasons[0]
  assert gate.judge(results(0.12, 0.12), True, 0.0, 0.0)  # equal is not better
  assert gate.judge(results(0.13, 0.12), True, 0.0, 0.0) == []
  assert gate.judge(results(0.13, 0.12), True, 0.02, 0.0)  # the configured lift


def test_the_last_blessed_ranker_and_the_retrieval_blessing_count_too():
  assert "last blessed ranker's 0.1500" in gate.judge(results(0.14, 0.12, 0.15), True, 0, 0)[0]
  assert gate.judge(results(0.14, 0.12, 0.15), True, 0, 0.02) == []  # within the tolerance
  assert "was not blessed" in gate.judge(results(0.14, 0.12), False, 0, 0)[0]


def test_ranks_per_list_count_ties_against_the_held_out_item():
  rows = {"user_id": np.array([b"u", b"u", b"u", b"v", b"v"]),
          "label": np.array([0.0, 1.0, 0.0, 1.0, 0.0])}
  scores = {"ranker": np.array([0.9, 0.5, 0.5, 0.2, 0.1]),
            "retrieval": -np.array([0, 1, 2, 0, 1], np.float64)}
  ranks = gate.target_ranks(rows, scores)
  assert ranks["ranker"].tolist() == [2, 0]  # u: 0.9 above it, the 0.5 tie counts too
  assert ranks["retrieval"].tolist() == [1, 0]


@pytest.mark.parametrize("kwargs", [{"min_rerank_lift": 1.5}, {"min_rerank_lift": -2},
                                    {"max_regression": -0.1}, {"min_rerank_lift": "high"}])
def test_thresholds_out_of_range_are_refused_when_the_pipeline_is_built(kwargs):
  from tfx.types import channel_utils, standard_artifacts
  channel = lambda t: channel_utils.as_channel([t()])
  with pytest.raises(ValueError, match="RankingGate: (min_rerank_lift|max_regression)"):
    RankingGate(channel(standard_artifacts.Examples), channel(standard_artifacts.Model),
                channel(standard_artifacts.ModelBlessing), **kwargs)
