"""`recsys compare-rankers`: every ranking architecture on one run's data, one table.

Reuses a finished pipeline run (its Transform output, time-ordered split and retrieval
model, found through ML Metadata), trains each architecture with the pipeline's own
ranking run_fn, and scores all of them with the RankingEvaluator's protocols on the same
held-out users and the same candidates — so the rows differ only in the ranker.
"""
import dataclasses
import json
import os
import tempfile
import time
from typing import Dict, List

from tfx.components.trainer import fn_args_utils
from tfx.proto import trainer_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

from recsys_tfx.components import evaluation_data
from recsys_tfx.components.ranking_evaluator import executor as ranking_evaluator
from recsys_tfx.pipeline import summary
from recsys_tfx.pipeline.pipeline import ranking_custom_config
from recsys_tfx.trainer import ranking_task
from recsys_tfx.trainer.config import ARCHITECTURES


def _artifact(store, type_name: str, producer: str, cls):
  found = summary.latest_artifact(store, type_name, producer)
  if found is None:
    raise ValueError(f"no {type_name} from {producer} in ML Metadata: run the pipeline first")
  artifact = cls()
  artifact.set_mlmd_artifact(found)
  return artifact


def run_inputs(store) -> Dict[str, object]:
  return {
      "examples": _artifact(store, "Examples", "TimeSplitExampleGen", standard_artifacts.Examples),
      "transformed": _artifact(store, "Examples", "Transform", standard_artifacts.Examples),
      "transform_graph": _artifact(store, "TransformGraph", "Transform",
                                   standard_artifacts.TransformGraph),
      "schema": _artifact(store, "Schema", "ImportSchemaGen", standard_artifacts.Schema),
      "retrieval": _artifact(store, "Model", "RetrievalTrainer", standard_artifacts.Model),
  }


def train_ranker(inputs, custom_config: Dict[str, object], out_dir: str) -> str:
  """Runs the pipeline's ranking run_fn outside TFX; returns the serving model dir."""
  exec_properties = {
      "train_args": proto_utils.proto_to_json(trainer_pb2.TrainArgs(splits=["train"])),
      "eval_args": proto_utils.proto_to_json(trainer_pb2.EvalArgs(splits=["eval"])),
      "custom_config": json.dumps(custom_config)}
  fn_args = fn_args_utils.get_common_fn_args(
      {"examples": [inputs["transformed"]], "transform_graph": [inputs["transform_graph"]],
       "schema": [inputs["schema"]]}, exec_properties, working_dir=out_dir)
  fn_args.serving_model_dir = os.path.join(out_dir, "serving")
  fn_args.model_run_dir = os.path.join(out_dir, "run")
  fn_args.custom_config = custom_config
  ranking_task.run_fn(fn_args)
  return fn_args.serving_model_dir


def compare(config, architectures: List[str], out_root: str = None) -> Dict[str, Dict[str, float]]:
  """Trains and scores each architecture; the models go under `out_root`, or a temporary
  directory removed afterwards."""
  for name in architectures:
    if name not in ARCHITECTURES:
      raise ValueError(f"unknown architecture {name!r}; expected some of {ARCHITECTURES}")
  if out_root is None:
    with tempfile.TemporaryDirectory(prefix="compare-rankers-") as tmp:
      return compare(config, architectures, tmp)
  store = summary.open_store(config.metadata_path)
  inputs = run_inputs(store)
  data_dir = summary.latest_data_dir(store)
  held_out = evaluation_data.read_held_out(
      inputs["examples"], io_utils.get_only_uri_in_dir(inputs["schema"].uri))
  retrieval_dir = os.path.join(inputs["retrieval"].uri, "Format-Serving")
  results = {}
  for name in architectures:
    print(f"-> training {name}", flush=True)
    start = time.time()
    ranking = dataclasses.replace(config.ranking, architecture=name)
    custom_config = ranking_custom_config(dataclasses.replace(config, ranking=ranking), data_dir)
    model_dir = train_ranker(inputs, custom_config, os.path.join(out_root, name))
    seconds = time.time() - start
    metrics = ranking_evaluator.evaluate(retrieval_dir, model_dir, held_out, config.seed)
    metrics["train_seconds"] = seconds
    results[name] = metrics
    print(f"<- {name}: rerank NDCG@10 {metrics['rerank/ranker/ndcg@10']:.4f} "
          f"({seconds:.0f}s)", flush=True)
  return results


def table(results: Dict[str, Dict[str, float]]) -> str:
  cols = [("rerank/{}/hit_rate@10", "rerank HR@10"), ("rerank/{}/ndcg@10", "NDCG@10"),
          ("sampled/{}/hit_rate@10", "| sampled HR@10"), ("sampled/{}/ndcg@10", "NDCG@10")]
  lines = [f"  {'scorer':<24}" + "".join(f"{label:>16}" for _, label in cols)
           + f"{'train s':>9}"]
  for name, metrics in results.items():
    lines.append(f"  {name:<24}" + "".join(f"{metrics[c.format('ranker')]:>16.4f}" for c, _ in cols)
                 + f"{metrics['train_seconds']:>9.0f}")
  any_metrics = next(iter(results.values()))
  for scorer, label in (("retrieval", "retrieval score only"), ("popularity", "popularity")):
    lines.append(f"  {label:<24}" + "".join(f"{any_metrics[c.format(scorer)]:>16.4f}"
                                            for c, _ in cols) + f"{'':>9}")
  return "\n".join(lines)
