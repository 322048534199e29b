"""RankingEvaluator's executor: the ranker, the retrieval score and popularity ordering
the same candidate lists for the held-out test items (component.py says which lists)."""
from typing import Any, Dict, List

import numpy as np
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from recsys_tfx.components import evaluation_data as data
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import export, metrics

RERANK_CANDIDATES = 100
PAIR_BATCH = 8192


def _ranks(score_lists: List[np.ndarray]) -> np.ndarray:
  """Rank of position 0 (the held-out item) in each list (lists differ in length)."""
  return np.array([int(metrics.rank_in_list(s[None, :])[0]) for s in score_lists], np.int64)


def score_pairs(ranker, users: np.ndarray, items: np.ndarray, context: Dict[str, np.ndarray]
                ) -> np.ndarray:
  inputs = {feats.USER_ID: users, feats.ITEM_ID: items, **context}
  return data.call_in_batches(ranker.signatures[contract.RANKING_SIGNATURE], inputs,
                              contract.SCORES, PAIR_BATCH)


def evaluate(retrieval_dir: str, ranking_dir: str, held_out: data.HeldOut,
             seed: int = 0) -> Dict[str, float]:
  retrieval = export.load_model(retrieval_dir)
  ranker = export.load_model(ranking_dir)
  catalogue = retrieval.signatures[contract.ITEM_EMBEDDINGS]()
  item_ids = np.array([b.decode() for b in catalogue[contract.ITEM_IDS].numpy()], dtype=object)
  item_emb = catalogue[contract.EMBEDDINGS].numpy()
  index = {item: i for i, item in enumerate(item_ids)}
  test, seen_sets, target = data.held_out_frame(held_out.test, held_out.train, index)
  popularity = data.popularity(held_out.train, index, seed)
  context = held_out.context

  query_inputs = {feats.USER_ID: test[feats.USER_ID].to_numpy().astype(object),
                  **{c: test[c].to_numpy() for c in context}}
  retrieved = data.call_in_batches(retrieval.signatures[contract.RECOMMEND_WITH_CONTEXT],
                                   query_inputs, contract.ITEM_IDS)

  rng = np.random.default_rng(seed)
  candidate_lists = {"sampled": [], "rerank": []}
  for row in range(len(test)):
    negatives = metrics.sampled_negatives(len(item_ids), seen_sets[row] | {target[row]}, rng)
    candidate_lists["sampled"].append(np.concatenate([[target[row]], negatives]))
    top = [index[i.decode()] for i in retrieved[row][:RERANK_CANDIDATES]]
    top = [i for i in top if i not in seen_sets[row]]
    # The held-out item first when retrieval found it; otherwise the list is a miss.
    others = [i for i in top if i != target[row]]
    candidate_lists["rerank"].append(
        np.array([target[row]] + others) if target[row] in top else None)

  retrieval_scores = score_candidates(retrieval, query_inputs, item_emb, candidate_lists)
  out = {"users_evaluated": int(len(test))}
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
      ranks = np.full(len(test), metrics.NEVER)  # a retrieval miss never reaches the top 10
      ranks[found] = _ranks(per_user)
      out.update({f"{protocol}/{name}/{k}": v
                  for k, v in metrics.summarize(ranks, ks=(10,)).items()})
    out[f"{protocol}/candidates_with_target"] = len(found) / max(1, len(test))
  return out


def score_candidates(retrieval, query_inputs: Dict[str, np.ndarray], item_emb: np.ndarray,
                     candidate_lists: Dict[str, list]) -> Dict[str, list]:
  """The retrieval model's score of each user's candidates, per protocol (None for a
  user without a list). Queries are computed a slice of users at a time: all at once they would not
  fit in memory at scale, and a baseline's query is as long as the catalogue."""
  out = {protocol: [None] * len(lists) for protocol, lists in candidate_lists.items()}
  users = len(next(iter(query_inputs.values())))
  for start in range(0, users, data.BATCH):
    batch = {k: v[start:start + data.BATCH] for k, v in query_inputs.items()}
    queries = data.call_in_batches(retrieval.signatures[contract.QUERY_EMBEDDING], batch,
                                   contract.EMBEDDING)
    for protocol, lists in candidate_lists.items():
      for row, query in enumerate(queries, start):
        if lists[row] is not None:
          out[protocol][row] = item_emb[lists[row]] @ query
  return out


def ranking_table(values: Dict[str, float], architecture: str) -> str:
  lines = [f"  {'scorer':<22}{'rerank HR@10':>14}{'NDCG@10':>9}{'| sampled HR@10':>17}{'NDCG@10':>9}"]
  for name, label in (("ranker", f"ranker ({architecture})"), ("retrieval", "retrieval score"),
                      ("popularity", "popularity")):
    lines.append(
        f"  {label:<22}{values[f'rerank/{name}/hit_rate@10']:>14.4f}"
        f"{values[f'rerank/{name}/ndcg@10']:>9.4f}"
        f"{values[f'sampled/{name}/hit_rate@10']:>17.4f}{values[f'sampled/{name}/ndcg@10']:>9.4f}")
  return "\n".join(lines)


HEADLINE = ("rerank/ranker/ndcg@10", "rerank/retrieval/ndcg@10", "sampled/ranker/ndcg@10",
            "sampled/retrieval/ndcg@10", "sampled/popularity/ndcg@10")


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(input_dict["examples"])
    retrieval_model = artifact_utils.get_single_instance(input_dict["retrieval_model"])
    ranking_model = artifact_utils.get_single_instance(input_dict["ranking_model"])
    schema = artifact_utils.get_single_instance(input_dict["schema"])
    held_out = data.read_held_out(examples, io_utils.get_only_uri_in_dir(schema.uri))
    values = evaluate(path_utils.serving_model_path(retrieval_model.uri),
                      path_utils.serving_model_path(ranking_model.uri), held_out,
                      int(exec_properties["seed"]))
    data.record_metrics(artifact_utils.get_single_instance(output_dict["evaluation"]), values,
                        HEADLINE, "RankingEvaluator")
