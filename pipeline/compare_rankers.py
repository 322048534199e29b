"""`recsys compare-rankers`: every ranking architecture on one run's data, one table.

Reuses a finished pipeline run (its Transform output, canonical data, and the held-out
users' candidate lists RankingEvalExamples wrote, found through ML Metadata), trains each
architecture with the pipeline's own ranking run_fn, and orders the same lists with each,
as the RankingGate does — so the rows differ only in the ranker.
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
from tfx.utils import proto_utils

from recsys_tfx.components.ranking_gate import executor as gate
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
      "ranking_examples": _artifact(store, "Examples", "RankingEvalExamples",
                                    standard_artifacts.Examples),
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
  lists = gate.read_lists(inputs["ranking_examples"])
  users = inputs["ranking_examples"].get_int_custom_property("users")
  results = {}
  for name in architectures:
    print(f"-> training {name}", flush=True)
    start = time.time()
    ranking = dataclasses.replace(config.ranking, architecture=name)
    custom_config = ranking_custom_config(dataclasses.replace(config, ranking=ranking), data_dir)
    model_dir = train_ranker(inputs, custom_config, os.path.join(out_root, name))
    seconds = time.time() - start
    metrics = gate.evaluate(lists, model_dir, None, users)
    metrics["train_seconds"] = seconds
    results[name] = metrics
    print(f"<- {name}: NDCG@10 on the lists {metrics['lists/ranker/ndcg@10']:.4f} "
          f"(retrieval order {metrics['lists/retrieval/ndcg@10']:.4f}; {seconds:.0f}s)",
          flush=True)
  return results


def table(results: Dict[str, Dict[str, float]]) -> str:
  """Each architecture's order of the lists, then the retrieval order and popularity's."""
  cols = [("lists/{}/hit_rate@10", "HR@10"), ("lists/{}/ndcg@10", "NDCG@10"),
          ("users/{}/hit_rate@10", "| users HR@10"), ("users/{}/ndcg@10", "NDCG@10")]
  lines = [f"  {'order':<24}" + "".join(f"{label:>15}" for _, label in cols) + f"{'train s':>9}"]
  for name, values in results.items():
    lines.append(f"  {name:<24}" + "".join(f"{values[c.format('ranker')]:>15.4f}"
                                           for c, _ in cols)
                 + f"{values['train_seconds']:>9.0f}")
  any_values = next(iter(results.values()))
  for order, label in (("retrieval", "retrieval order"), ("popularity", "popularity")):
    lines.append(f"  {label:<24}" + "".join(f"{any_values[c.format(order)]:>15.4f}"
                                            for c, _ in cols) + f"{'':>9}")
  return "\n".join(lines)
