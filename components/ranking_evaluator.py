"""RankingEvaluator: how well the ranker orders candidates for the held-out test item,
beside the retrieval score alone and popularity, on the same users and candidates.

Two protocols, reported separately:
  sampled  the held-out item among 100 sampled items the user has not interacted with
           in training (the protocol of the NCF / SASRec papers)
  rerank   the retrieval model's top-100 (ScaNN, the user's training items removed), as the
           serving funnel sees it; a held-out item that retrieval missed counts as a miss
"""
from typing import Dict, List

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx import v1 as tfx
from tfx.utils import io_utils, path_utils

from components import ranking_metrics as rm
from components.retrieval_evaluator import (BATCH, call_in_batches, held_out_frame,
                                            read_split, record_metrics)
from trainer import export
from trainer import features as feats

Examples = tfx.types.standard_artifacts.Examples
Model = tfx.types.standard_artifacts.Model
Schema = tfx.types.standard_artifacts.Schema
ModelEvaluation = tfx.types.standard_artifacts.ModelEvaluation

RERANK_CANDIDATES = 100
PAIR_BATCH = 8192


def _ranks(score_lists: List[np.ndarray], rng) -> np.ndarray:
  """Rank of position 0 (the held-out item) in each list; -1-free lists only."""
  return np.array([rm.sampled_rank(s, 0, np.arange(1, len(s)), rng) for s in score_lists])


def score_pairs(ranker, users: np.ndarray, items: np.ndarray, context: Dict[str, np.ndarray]
                ) -> np.ndarray:
  inputs = {feats.USER_ID: users, feats.ITEM_ID: items, **context}
  return call_in_batches(ranker.signatures["serving_default"], inputs, "scores", PAIR_BATCH)


def evaluate(retrieval_dir: str, ranking_dir: str, train: pd.DataFrame, test: pd.DataFrame,
             context: List[str], seed: int = 0) -> Dict[str, float]:
  retrieval = export.load_model(retrieval_dir)
  ranker = export.load_model(ranking_dir)
  catalogue = retrieval.signatures["item_embeddings"]()
  item_ids = np.array([b.decode() for b in catalogue["item_ids"].numpy()], dtype=object)
  item_emb = catalogue["embeddings"].numpy()
  index = {item: i for i, item in enumerate(item_ids)}
  test, seen_sets, target = held_out_frame(test, train, index)
  popularity = np.zeros(len(item_ids))
  counts = train[feats.ITEM_ID].map(index).dropna().astype(int).value_counts()
  popularity[counts.index.to_numpy()] = counts.to_numpy()

  query_inputs = {feats.USER_ID: test[feats.USER_ID].to_numpy().astype(object),
                  **{c: test[c].to_numpy() for c in context}}
  retrieved = call_in_batches(retrieval.signatures["recommend_with_context"], query_inputs,
                              "item_ids")

  rng = np.random.default_rng(seed)
  candidate_lists = {"sampled": [], "rerank": []}
  for row in range(len(test)):
    negatives = rm.sampled_negatives(len(item_ids), seen_sets[row] | {target[row]}, rng)
    candidate_lists["sampled"].append(np.concatenate([[target[row]], negatives]))
    top = [index[i.decode()] for i in retrieved[row][:RERANK_CANDIDATES]]
    top = [i for i in top if i not in seen_sets[row]]
    # The held-out item first when retrieval found it; otherwise the list is a miss.
    others = [i for i in top if i != target[row]]
    candidate_lists["rerank"].append(
        np.array([target[row]] + others) if target[row] in top else None)

  retrieval_scores = score_candidates(retrieval, query_inputs, item_emb, candidate_lists)
  metrics = {"users_evaluated": int(len(test))}
  for protocol, lists in candidate_lists.items():
    found = [r for r, c in enumerate(lists) if c is not None]
    flat_rows = np.concatenate([[r] * len(lists[r]) for r in found]) if found else np.zeros(0, int)
    flat_items = np.concatenate([lists[r] for r in found]) if found else np.zeros(0, int)
    ranker_scores = score_pairs(ranker, test[feats.USER_ID].to_numpy().astype(object)[flat_rows],
                                item_ids[flat_items],
                                {c: test[c].to_numpy()[flat_rows] for c in context})
    scorers = {
        "ranker": ranker_scores,
        "retrieval": np.concatenate([retrieval_scores[protocol][r] for r in found] or [[]]),
        "popularity": popularity[flat_items],
    }
    bounds = np.cumsum([0] + [len(lists[r]) for r in found])
    for name, flat_scores in scorers.items():
      per_user = [flat_scores[bounds[i]:bounds[i + 1]] for i in range(len(found))]
      ranks = np.full(len(test), 10 ** 9)  # a retrieval miss never reaches the top 10
      ranks[found] = _ranks(per_user, rng)
      metrics.update({f"{protocol}/{name}/{k}": v
                      for k, v in rm.summarize(ranks, ks=(10,)).items()})
    metrics[f"{protocol}/candidates_with_target"] = len(found) / max(1, len(test))
  return metrics


def score_candidates(retrieval, query_inputs: Dict[str, np.ndarray], item_emb: np.ndarray,
                     candidate_lists: Dict[str, list]) -> Dict[str, list]:
  """The retrieval model's score of each user's candidates, per protocol (None for a
  user without a list). Queries are computed a slice of users at a time: all at once they would not
  fit in memory at scale, and a baseline's query is as long as the catalogue."""
  out = {protocol: [None] * len(lists) for protocol, lists in candidate_lists.items()}
  users = len(next(iter(query_inputs.values())))
  for start in range(0, users, BATCH):
    batch = {k: v[start:start + BATCH] for k, v in query_inputs.items()}
    queries = call_in_batches(retrieval.signatures["query_embedding"], batch, "embedding")
    for protocol, lists in candidate_lists.items():
      for row, query in enumerate(queries, start):
        if lists[row] is not None:
          out[protocol][row] = item_emb[lists[row]] @ query
  return out


def ranking_table(metrics: Dict[str, float], architecture: str) -> str:
  lines = [f"  {'scorer':<22}{'rerank HR@10':>14}{'NDCG@10':>9}{'| sampled HR@10':>17}{'NDCG@10':>9}"]
  for name, label in (("ranker", f"ranker ({architecture})"), ("retrieval", "retrieval score"),
                      ("popularity", "popularity")):
    lines.append(
        f"  {label:<22}{metrics[f'rerank/{name}/hit_rate@10']:>14.4f}"
        f"{metrics[f'rerank/{name}/ndcg@10']:>9.4f}"
        f"{metrics[f'sampled/{name}/hit_rate@10']:>17.4f}{metrics[f'sampled/{name}/ndcg@10']:>9.4f}")
  return "\n".join(lines)


HEADLINE = ("rerank/ranker/ndcg@10", "rerank/retrieval/ndcg@10", "sampled/ranker/ndcg@10",
            "sampled/retrieval/ndcg@10", "sampled/popularity/ndcg@10")


@tfx.dsl.components.component
def RankingEvaluator(examples: tfx.dsl.components.InputArtifact[Examples],
                     retrieval_model: tfx.dsl.components.InputArtifact[Model],
                     ranking_model: tfx.dsl.components.InputArtifact[Model],
                     schema: tfx.dsl.components.InputArtifact[Schema],
                     evaluation: tfx.dsl.components.OutputArtifact[ModelEvaluation],
                     seed: tfx.dsl.components.Parameter[int] = 0):
  all_features = feats.load_features(io_utils.get_only_uri_in_dir(schema.uri))
  context = [f.name for f in feats.by_role(all_features, "context")]
  dtypes = {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string,
            **{f.name: tf.as_dtype(f.dtype) for f in feats.by_role(all_features, "context")}}
  train = read_split(examples, "train", {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string})
  test = read_split(examples, "test", dtypes)
  metrics = evaluate(path_utils.serving_model_path(retrieval_model.uri),
                     path_utils.serving_model_path(ranking_model.uri), train, test, context, seed)
  record_metrics(evaluation, metrics, HEADLINE, "RankingEvaluator")
