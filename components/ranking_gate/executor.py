"""RankingGate's executor: scores every candidate list with the ranker (and the last
blessed ranker, when there is one), compares the orders, and blesses or not."""
import json
import os
from typing import Any, Dict, List, Optional

import numpy as np
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from recsys_tfx.components import evaluation_data as data
from recsys_tfx.components.ranking_eval_examples.executor import (ALL, POPULARITY,
                                                                  RETRIEVAL_POSITION)
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import export, metrics

ORDERS = ("ranker", "retrieval", "popularity", "last_blessed_ranker")
HEADLINE = ("lists/ranker/ndcg@10", "lists/retrieval/ndcg@10", "lists/popularity/ndcg@10",
            "rerank_lift@10")
SCORE_BATCH = 4096


def read_lists(ranking_examples) -> Dict[str, np.ndarray]:
  """Every candidate row of the `test` split: user, label, retrieval position,
  popularity and the serialized example, in the order written (one user's list after
  another)."""
  files = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([ranking_examples], ALL),
                                        "*"))
  spec = {feats.USER_ID: tf.io.FixedLenFeature([], tf.string),
          feats.LABEL: tf.io.FixedLenFeature([], tf.float32),
          RETRIEVAL_POSITION: tf.io.FixedLenFeature([], tf.int64),
          POPULARITY: tf.io.FixedLenFeature([], tf.float32)}
  parts: Dict[str, List[np.ndarray]] = {name: [] for name in list(spec) + ["serialized"]}
  for batch in tf.data.TFRecordDataset(files, compression_type="GZIP").batch(SCORE_BATCH):
    parsed = tf.io.parse_example(batch, spec)
    for name in spec:
      parts[name].append(parsed[name].numpy())
    parts["serialized"].append(batch.numpy())
  return {name: np.concatenate(values) if values else np.zeros(0)
          for name, values in parts.items()}


def score(model_dir: str, serialized: np.ndarray) -> np.ndarray:
  model = export.load_model(model_dir)
  fn = model.signatures[contract.SCORE_EXAMPLES]
  return np.concatenate([fn(examples=tf.constant(serialized[i:i + SCORE_BATCH]))[
      contract.SCORES].numpy() for i in range(0, len(serialized), SCORE_BATCH)] or [[]])


def target_ranks(rows: Dict[str, np.ndarray], scores: Dict[str, np.ndarray]
                 ) -> Dict[str, np.ndarray]:
  """Per list (user), the 0-based rank of the held-out item under each order; ties
  count against it (trainer/metrics.py)."""
  users = rows[feats.USER_ID]
  starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]]) if len(users) else []
  ends = np.r_[starts[1:], len(users)] if len(users) else []
  out = {name: [] for name in scores}
  for start, end in zip(starts, ends):
    target = start + int(np.argmax(rows[feats.LABEL][start:end]))
    others = np.r_[start:target, target + 1:end]
    for name, values in scores.items():
      row = np.concatenate([[values[target]], values[others]])
      out[name].append(int(metrics.rank_in_list(row[None, :])[0]))
  return {name: np.array(ranks, np.int64) for name, ranks in out.items()}


def judge(results: Dict[str, float], retrieval_blessed: bool, min_rerank_lift: float,
          max_regression: float) -> List[str]:
  """Why the ranker may not serve: [] when it may."""
  reasons = []
  if not retrieval_blessed:
    reasons.append("the retrieval model it re-ranks was not blessed, so its candidates are "
                   "not what users are served")
  lift = results["rerank_lift@10"]
  if not lift > min_rerank_lift:
    reasons.append(f"re-ranking NDCG@10 {results['lists/ranker/ndcg@10']:.4f} vs the "
                   f"retrieval order's {results['lists/retrieval/ndcg@10']:.4f}: lift "
                   f"{lift:+.4f}, required > {min_rerank_lift:+.4f}")
  baseline = results.get("lists/last_blessed_ranker/ndcg@10")
  if baseline is not None and results["lists/ranker/ndcg@10"] < baseline - max_regression:
    reasons.append(f"NDCG@10 {results['lists/ranker/ndcg@10']:.4f} vs the last blessed "
                   f"ranker's {baseline:.4f} on the same lists; allowed regression "
                   f"{max_regression:.4f}")
  return reasons


def evaluate(rows: Dict[str, np.ndarray], model_dir: str, baseline_dir: Optional[str],
             users: int) -> Dict[str, float]:
  scores = {"ranker": score(model_dir, rows["serialized"]),
            "retrieval": -rows[RETRIEVAL_POSITION].astype(np.float64),
            "popularity": rows[POPULARITY].astype(np.float64)}
  if baseline_dir:
    scores["last_blessed_ranker"] = score(baseline_dir, rows["serialized"])
  ranks = target_ranks(rows, scores)
  lists = len(ranks["ranker"])
  out: Dict[str, float] = {"users": users, "lists_with_target": lists,
                           "candidates_with_target": lists / max(1, users)}
  for name, values in ranks.items():
    for key, value in metrics.summarize(values, ks=(10,)).items():
      out[f"lists/{name}/{key}"] = value
      # Over every test user: a list without the held-out item is a miss for every order.
      out[f"users/{name}/{key}"] = value * lists / max(1, users)
  out["rerank_lift@10"] = out["lists/ranker/ndcg@10"] - out["lists/retrieval/ndcg@10"]
  return out


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    ranking_examples = artifact_utils.get_single_instance(input_dict["ranking_examples"])
    model = artifact_utils.get_single_instance(input_dict["model"])
    baseline = input_dict.get("baseline_model") or []
    retrieval_blessing = artifact_utils.get_single_instance(input_dict["retrieval_blessing"])
    results = evaluate(read_lists(ranking_examples), path_utils.serving_model_path(model.uri),
                       path_utils.serving_model_path(baseline[0].uri) if baseline else None,
                       ranking_examples.get_int_custom_property("users"))
    reasons = judge(results, bool(retrieval_blessing.get_int_custom_property("blessed")),
                    float(exec_properties["min_rerank_lift"]),
                    float(exec_properties["max_regression"]))
    blessed = int(not reasons)

    blessing = artifact_utils.get_single_instance(output_dict["blessing"])
    blessing.set_int_custom_property("blessed", blessed)
    blessing.set_string_custom_property("current_model", model.uri)
    blessing.set_int_custom_property("current_model_id", model.id)
    blessing.set_string_custom_property("reasons", json.dumps(reasons))
    with tf.io.gfile.GFile(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"),
                           "w") as f:
      f.write("")
    evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
    evaluation.set_int_custom_property("blessed", blessed)
    evaluation.set_string_custom_property("reasons", json.dumps(reasons))
    data.record_metrics(evaluation, results, HEADLINE, "RankingGate")
    print("RankingGate: " + ("BLESSED: the ranker re-orders the retrieval candidates better"
                             if blessed else "NOT BLESSED, not pushed: " + "; ".join(reasons)),
          flush=True)


def ranking_table(values: Dict[str, float], architecture: str) -> str:
  """The orders of the same candidate lists, for the run summary and the report."""
  labels = {"ranker": f"ranker ({architecture})", "retrieval": "retrieval order",
            "popularity": "popularity", "last_blessed_ranker": "last blessed ranker"}
  lines = [f"  {'order':<24}{'HR@10':>9}{'NDCG@10':>9}   | all test users: {'HR@10':>7}"
           f"{'NDCG@10':>9}"]
  for name in ORDERS:
    if f"lists/{name}/ndcg@10" in values:
      lines.append(f"  {labels[name]:<24}{values[f'lists/{name}/hit_rate@10']:>9.4f}"
                   f"{values[f'lists/{name}/ndcg@10']:>9.4f}   | {'':>16}"
                   f"{values[f'users/{name}/hit_rate@10']:>7.4f}"
                   f"{values[f'users/{name}/ndcg@10']:>9.4f}")
  return "\n".join(lines)
