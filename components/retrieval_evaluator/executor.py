"""RetrievalEvaluator's executor: scores the exported retrieval model and the popularity
baseline on the held-out `test` split with one protocol for both (trainer/metrics.py),
and measures ScaNN's recall@10 against exact search over the same embeddings."""
from typing import Any, Dict, List

import numpy as np
import pandas as pd
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from recsys_tfx.components import evaluation_data as data
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import export, metrics, selection

SCANN_RECALL = "scann_recall@10"
HEADLINE = ("model/hit_rate@10", "model/ndcg@10", "popularity/hit_rate@10",
            "popularity/ndcg@10", SCANN_RECALL)  # the last only where there is ScaNN


def query_inputs(model, test: pd.DataFrame, context: List[str]):
  """The query signatures to call and their inputs: a model that reads history is asked
  with each held-out example's own history (the items before it), any other by user id.
  Returns (embedding signature, top-k signature, inputs)."""
  inputs = {c: test[c].to_numpy() for c in context}
  if contract.HISTORY_EMBEDDING in model.signatures:
    inputs[feats.HISTORY] = data.string_matrix(test[feats.HISTORY].tolist())
    return contract.HISTORY_EMBEDDING, contract.RECOMMEND_WITH_HISTORY, inputs
  inputs[feats.USER_ID] = test[feats.USER_ID].to_numpy().astype(object)
  return contract.QUERY_EMBEDDING, contract.RECOMMEND_WITH_CONTEXT, inputs


def evaluate(model_dir: str, held_out: data.HeldOut, seed: int = 0) -> Dict[str, float]:
  """Full-catalogue and sampled HR/NDCG for the model and for popularity, plus ScaNN's
  recall where the model has a ScaNN index (not the baselines' exact one)."""
  model = export.load_model(model_dir)
  catalogue = model.signatures[contract.ITEM_EMBEDDINGS]()
  item_ids = [b.decode() for b in catalogue[contract.ITEM_IDS].numpy()]
  item_emb = catalogue[contract.EMBEDDINGS].numpy()
  index = {item: i for i, item in enumerate(item_ids)}
  has_scann = index_kind(model) == "scann"

  test, seen_sets, target = data.held_out_frame(held_out.test, held_out.train, index)
  popularity = data.popularity(held_out.train, index, seed)
  embed, top_k, inputs = query_inputs(model, test, held_out.context)

  rng = np.random.default_rng(seed)
  ranks = {name: {"full": [], "sampled": []} for name in ("model", "popularity")}
  scann_hits = 0
  # A slice of users at a time: queries and scores for every user at once would not fit
  # in memory at scale (and a baseline's query is as long as the catalogue).
  for start in range(0, len(test), data.BATCH):
    rows = slice(start, start + data.BATCH)
    batch_inputs = {k: v[rows] for k, v in inputs.items()}
    scores = {"model": data.call_in_batches(model.signatures[embed], batch_inputs,
                                            contract.EMBEDDING) @ item_emb.T}
    scores["popularity"] = np.tile(popularity, (len(scores["model"]), 1))
    if has_scann:
      scann_hits += scann_hits_at_10(model.signatures[top_k], batch_inputs, scores["model"],
                                     item_ids)
    targets = target[rows]
    lists = np.stack([np.concatenate([[t], metrics.sampled_negatives(len(item_ids), seen | {t},
                                                                      rng)])
                      for t, seen in zip(targets, seen_sets[rows])]) if len(targets) else None
    for name, values in scores.items():
      ranks[name]["full"].append(metrics.rank_of_target(values, targets, seen_sets[rows]))
      if lists is not None:
        ranks[name]["sampled"].append(
            metrics.rank_in_list(np.take_along_axis(values, lists, axis=1)))

  out = {"users_evaluated": int(len(test)), "catalogue_size": len(item_ids)}
  for name, by_protocol in ranks.items():
    full = np.concatenate(by_protocol["full"]) if by_protocol["full"] else np.zeros(0, np.int64)
    sampled = (np.concatenate(by_protocol["sampled"]) if by_protocol["sampled"]
               else np.zeros(0, np.int64))
    out.update({f"{name}/{k}": v for k, v in metrics.summarize(full).items()})
    out.update({f"{name}/sampled_{k}": v for k, v in metrics.summarize(sampled, ks=(10,)).items()})
  if has_scann:
    out[SCANN_RECALL] = scann_hits / (10.0 * len(test)) if len(test) else 0.0
  return out


def index_kind(model) -> str:
  """"scann" or "brute_force"; models exported before the attribute existed had ScaNN."""
  kind = getattr(model, "index_kind", None)
  return kind.numpy().decode() if kind is not None else "scann"


def scann_hits_at_10(top_k_signature, inputs: Dict[str, np.ndarray], exact_scores: np.ndarray,
                     item_ids: List[str]) -> int:
  """How many of each row's exact (brute-force) top-10 items ScaNN's top-10 also returns,
  summed over the rows; exact_scores [rows, catalogue] are the model's scores."""
  approx = data.call_in_batches(top_k_signature, inputs, contract.ITEM_IDS)[:, :10]
  exact = top_indices(exact_scores, 10)
  return sum(len({item_ids[i] for i in e} & {a.decode() for a in a_row})
             for e, a_row in zip(exact, approx))


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
  """Column indices of each row's k highest scores (in no particular order)."""
  k = min(k, scores.shape[1])
  return np.argpartition(-scores, k - 1, axis=1)[:, :k]


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    examples = artifact_utils.get_single_instance(input_dict["examples"])
    model = artifact_utils.get_single_instance(input_dict["model"])
    schema = artifact_utils.get_single_instance(input_dict["schema"])
    held_out = data.read_held_out(examples, io_utils.get_only_uri_in_dir(schema.uri))
    model_dir = path_utils.serving_model_path(model.uri)
    values = evaluate(model_dir, held_out, int(exec_properties["seed"]))
    evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
    values.update(selection_figures(model_dir, evaluation))
    data.record_metrics(evaluation, values, HEADLINE + tuple(
        k for k in values if k.startswith("selection/") and k.endswith("ndcg@10")),
                        "RetrievalEvaluator")


def selection_figures(model_dir: str, evaluation) -> Dict[str, float]:
  """How the primary model was chosen (trainer/selection.py), into the metrics and MLMD:
  `selected_model`, and each candidate's eval-split figures as selection/<model>/<metric>."""
  chosen = selection.read(model_dir)
  if not chosen:
    return {}
  evaluation.set_string_custom_property("selected_model", chosen["chosen"])
  evaluation.set_string_custom_property("candidate_models", ",".join(chosen["candidates"]))
  return {f"selection/{name}/{key}": float(value)
          for name, figures in chosen["candidates"].items()
          for key, value in figures.items() if isinstance(value, (int, float))}
