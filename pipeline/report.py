"""`recsys report`: the TFMA results of one pipeline run as tables and PNG plots.

Tables: every validated metric, overall and per slice, for the candidate model and (when
TFMA had one) the baseline — the latest blessed model — with the difference; the blessing
verdict and its reasons. Plots, written next to TFMA's own output (<evaluation>/report/):
HR@K and NDCG@K curves per model (candidate, baseline, popularity) and per-slice bars.
"""
import json
import os
from typing import Dict, List, Optional, Tuple

import tensorflow_model_analysis as tfma

from recsys_tfx.components.ranking_gate import executor as ranking_gate
from recsys_tfx.pipeline import summary

SliceKey = Tuple
Metrics = Dict[SliceKey, Dict[str, float]]


def run_ids(store) -> List[str]:
  runs = sorted(store.get_contexts_by_type("pipeline_run"), key=lambda c: c.create_time_since_epoch)
  return [c.name for c in runs]


def run_artifact(store, run_id: str, type_name: str, producer: str):
  context = store.get_context_by_type_and_name("pipeline_run", run_id)
  if context is None:
    raise ValueError(f"no pipeline run {run_id!r}; runs: {run_ids(store)}")
  artifacts = [a for a in store.get_artifacts_by_context(context.id)
               if f"/{producer}/" in a.uri
               and store.get_artifact_types_by_id([a.type_id])[0].name == type_name]
  return max(artifacts, key=lambda a: a.id) if artifacts else None


def _flatten(metrics_by_key) -> Dict[str, float]:
  """TFMA's {output: {sub_key: {name: {'doubleValue': v}}}} -> {'ndcg@10': v, ...}."""
  out = {}
  for sub_keys in metrics_by_key.values():
    for sub_key, values in sub_keys.items():
      suffix = f"@{sub_key.split(':')[1]}" if sub_key.startswith("topK:") else ""
      for name, value in values.items():
        if "doubleValue" in value:
          out[name + suffix] = value["doubleValue"]
  return out


def load_metrics(evaluation_uri: str) -> Dict[str, Metrics]:
  """{'candidate': {slice: metrics}, 'baseline': ...} (baseline only if TFMA had one)."""
  out = {}
  for model_name in ("candidate", "baseline"):
    try:
      result = tfma.load_eval_result(evaluation_uri, model_name=model_name)
    except Exception:  # TFMA names the model '' when there is no baseline
      continue
    if result.slicing_metrics:
      out[model_name] = {k: _flatten(v) for k, v in result.slicing_metrics}
  if not out:
    result = tfma.load_eval_result(evaluation_uri)
    out["candidate"] = {k: _flatten(v) for k, v in result.slicing_metrics}
  return out


def retrieval_model_name(store, run_id: str) -> str:
  """The retrieval model the run trained (trainer.model), from its training.json."""
  model_run = run_artifact(store, run_id, "ModelRun", "RetrievalTrainer")
  path = os.path.join(model_run.uri, "training.json") if model_run is not None else ""
  if not path or not os.path.exists(path):
    return "retrieval model"
  with open(path) as f:
    return json.load(f).get("model", "retrieval model")


def slice_name(key: SliceKey) -> str:
  return ", ".join(f"{c}={v}" for c, v in key) or "overall"


SHORT_NAMES = {"hit_rate_lift": "HR lift", "hit_rate": "HR", "ndcg": "NDCG", "auc": "AUC"}


def short(name: str) -> str:
  metric, at, k = name.partition("@")
  return SHORT_NAMES.get(metric, metric) + at + k


def table(metrics: Dict[str, Metrics], metric_names: List[str]) -> str:
  candidate, baseline = metrics["candidate"], metrics.get("baseline")
  keys = sorted(candidate, key=lambda k: (len(k), slice_name(k)))
  width = max(9, max(len(short(n)) for n in metric_names) + 2)
  head = f"  {'slice':<28}" + "".join(f"{short(n):>{width}}" for n in metric_names)
  lines = [head]
  for key in keys:
    row = f"  {slice_name(key):<28}" + "".join(
        f"{candidate[key].get(n, float('nan')):>{width}.4f}" for n in metric_names)
    lines.append(row)
    if baseline and key in baseline:
      lines.append(f"  {'  baseline':<28}" + "".join(
          f"{baseline[key].get(n, float('nan')):>{width}.4f}" for n in metric_names))
      lines.append(f"  {'  change':<28}" + "".join(
          f"{candidate[key].get(n, 0) - baseline[key].get(n, 0):>+{width}.4f}"
          for n in metric_names))
  return "\n".join(lines)


def worst_slice(metrics: Metrics, metric: str) -> Optional[Tuple[str, float]]:
  sliced = [(slice_name(k), m[metric]) for k, m in metrics.items() if k and metric in m]
  return min(sliced, key=lambda s: s[1]) if sliced else None


def plot(metrics: Dict[str, Metrics], popularity: Optional[Dict[str, float]], ks: List[int],
         out_dir: str, model: str = "retrieval model") -> List[str]:
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  os.makedirs(out_dir, exist_ok=True)
  paths = []
  fig, axes = plt.subplots(1, 2, figsize=(10, 4))
  for ax, metric in zip(axes, ("hit_rate", "ndcg")):
    for model_name, per_slice in metrics.items():
      overall = per_slice[()]
      ax.plot(ks, [overall.get(f"{metric}@{k}", float("nan")) for k in ks], marker="o",
              label=f"{model} ({model_name})")
    if popularity:
      ax.plot(ks, [popularity.get(f"popularity/{metric}@{k}", float("nan")) for k in ks],
              marker="s", linestyle="--", label="popularity")
    ax.set_xlabel("K (full catalogue)")
    ax.set_title(f"{metric}@K")
    ax.grid(alpha=0.3)
    ax.legend()
  fig.tight_layout()
  paths.append(os.path.join(out_dir, "retrieval_at_k.png"))
  fig.savefig(paths[-1], dpi=110)
  plt.close(fig)

  candidate = metrics["candidate"]
  sliced = sorted((k for k in candidate if k), key=slice_name)
  if sliced:
    fig, ax = plt.subplots(figsize=(10, 4))
    names = [slice_name(k) for k in sliced]
    ax.bar(names, [candidate[k].get("hit_rate@10", 0) for k in sliced], color="tab:blue")
    ax.axhline(candidate[()].get("hit_rate@10", 0), color="black", linestyle="--",
               label="overall")
    ax.set_ylabel("HR@10 (candidate)")
    ax.set_title("HR@10 per slice")
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    fig.tight_layout()
    paths.append(os.path.join(out_dir, "retrieval_slices.png"))
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
  return paths


def report(metadata_path: str, run_id: Optional[str] = None, ks=(10, 50, 100)) -> Dict[str, object]:
  store = summary.open_store(metadata_path)
  runs = run_ids(store)
  if not runs:
    raise ValueError(f"{metadata_path} records no pipeline run")
  run_id = run_id or runs[-1]
  evaluation = run_artifact(store, run_id, "ModelEvaluation", "RetrievalValidator")
  if evaluation is None:
    raise ValueError(f"run {run_id!r} has no RetrievalValidator evaluation")
  print(f"Run {run_id} (ML Metadata: {metadata_path}); retrieval model: "
        f"{retrieval_model_name(store, run_id)}")
  retrieval = load_metrics(evaluation.uri)
  names = [f"{m}@{k}" for m in ("hit_rate", "ndcg") for k in ks] + ["hit_rate_lift@10"]
  print("\nRetrieval, full catalogue, held-out test split (TFMA; candidate vs baseline = "
        "the latest blessed model):")
  print(table(retrieval, names))
  worst = worst_slice(retrieval["candidate"], "hit_rate@10")
  if worst:
    print(f"  worst slice by HR@10: {worst[0]} ({worst[1]:.4f})")
  for model_name in ("Retrieval", "Ranking"):
    verdict = run_artifact(store, run_id, "ModelEvaluation", summary.VERDICT_BY[model_name])
    if verdict is not None:
      reasons = json.loads(verdict.custom_properties["reasons"].string_value or "[]")
      blessed = bool(verdict.custom_properties["blessed"].int_value)
      print(f"  {model_name.lower()}: " + summary.describe_blessing(
          {"blessed": blessed, "reasons": reasons}))

  popularity_artifact = run_artifact(store, run_id, "ModelEvaluation", "RetrievalEvaluator")
  popularity = None
  if popularity_artifact is not None:
    with open(os.path.join(popularity_artifact.uri, "metrics.json")) as f:
      popularity = json.load(f)
    chosen = popularity_artifact.custom_properties.get("selected_model")
    if any(k.startswith("selection/") for k in popularity):
      print("\nRetrieval models of the run on the eval split (the best NDCG@10 is the "
            "primary, all are candidate sources):")
      print(summary.selection_table(popularity, chosen.string_value if chosen else ""))

  ranking_eval = run_artifact(store, run_id, "ModelEvaluation", "RankingValidator")
  ranking = load_metrics(ranking_eval.uri) if ranking_eval is not None else None
  if ranking:
    print("\nRanking, a sample of the held-out users' candidate lists (TFMA; NDCG per user; "
          "baseline = the last blessed ranker):")
    print(table(ranking, ["auc"] + [f"ndcg@{k}" for k in ks]))
  gate = run_artifact(store, run_id, "ModelEvaluation", "RankingGate")
  if gate is not None:
    with open(os.path.join(gate.uri, "metrics.json")) as f:
      print("\nRanking, every held-out user's candidate list, ordered by the ranker, the "
            "retrieval order and popularity (RankingGate):")
      print(ranking_gate.ranking_table(json.load(f), "this run's"))
  plots = plot(retrieval, popularity, list(ks), os.path.join(evaluation.uri, "report"),
               retrieval_model_name(store, run_id))
  print("\nPlots:\n  " + "\n  ".join(plots))
  commands = tensorboard_commands(store, run_id)
  if commands:
    print("\nTensorBoard (loss and validation metrics per epoch, the two-tower's embedding "
          "norms; trainer/tensorboard_logs.py):\n  " + "\n  ".join(commands))
  return {"run": run_id, "retrieval": retrieval, "ranking": ranking, "plots": plots,
          "tensorboard": commands}


def tensorboard_commands(store, run_id: str) -> List[str]:
  """`tensorboard --logdir <model_run dir>` for each trainer of the run (its ModelRun
  artifact holds the logs, one folder per model)."""
  commands = []
  for trainer in ("RetrievalTrainer", "RankingTrainer"):
    model_run = run_artifact(store, run_id, "ModelRun", trainer)
    if model_run is not None:
      commands.append(f"tensorboard --logdir {model_run.uri}   # {trainer}")
  return commands
