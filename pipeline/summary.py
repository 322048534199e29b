"""The end-of-run summary, read back from ML Metadata: which stages serve and why, how the
primary retrieval model was chosen, what the models scored next to popularity and the
retrieval order. (`recsys run` then prints what the served funnel recommends.)"""
import json
import os
from typing import Dict, List, Optional

from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata

from recsys_tfx.components.ranking_gate import executor as ranking_gate
from recsys_tfx.schema import features as feats


def open_store(metadata_path: str) -> metadata_store.MetadataStore:
  if not os.path.exists(metadata_path):
    raise FileNotFoundError(f"no ML Metadata store at {metadata_path}: has the pipeline run?")
  return metadata_store.MetadataStore(metadata.sqlite_metadata_connection_config(metadata_path))


def latest_artifact(store, type_name: str, producer: Optional[str] = None):
  """The newest artifact of a type, optionally only one written by the named component
  (TFX lays artifacts out as <pipeline_root>/<component>/<output>/<execution id>). Only
  LIVE artifacts count: an interrupted run's partial outputs are never read."""
  artifacts = [a for a in store.get_artifacts_by_type(type_name)
               if a.state == a.LIVE and (producer is None or f"/{producer}/" in a.uri)]
  return max(artifacts, key=lambda a: a.id) if artifacts else None


def _property(artifact, name: str):
  value = artifact.custom_properties.get(name)
  if value is None:
    return None
  return value.string_value or value.int_value or value.double_value


def latest_data_dir(store) -> str:
  """The canonical data directory the latest run's ExampleGen read."""
  runs = [e for e in store.get_executions()
          if store.get_execution_types_by_id([e.type_id])[0].name.endswith("TimeSplitExampleGen")]
  if not runs:
    raise ValueError("ML Metadata records no TimeSplitExampleGen run: run the pipeline first")
  return max(runs, key=lambda e: e.id).custom_properties["input_base"].string_value


def latest_push(store, pusher: str = "RetrievalPusher"):
  """The newest push that really happened (a Pusher that got an unblessed model records
  an artifact with pushed=0), or None."""
  pushes = [a for a in store.get_artifacts_by_type("PushedModel")
            if a.state == a.LIVE and f"/{pusher}/" in a.uri and _property(a, "pushed") == 1]
  return max(pushes, key=lambda a: a.id) if pushes else None


def latest_pushed_model_dir(store, pusher: str = "RetrievalPusher") -> Optional[str]:
  """Where the live model is."""
  push = latest_push(store, pusher)
  return _property(push, "pushed_destination") if push else None


def latest_metrics(store, evaluator: str = "RetrievalEvaluator") -> Optional[Dict[str, float]]:
  evaluation = latest_artifact(store, "ModelEvaluation", evaluator)
  if evaluation is None:
    return None
  with open(os.path.join(evaluation.uri, "metrics.json")) as f:
    return json.load(f)


# Who records each stage's verdict: TFMA's, in words, for retrieval; the gate for ranking.
VERDICT_BY = {"Retrieval": "RetrievalBlessingReport", "Ranking": "RankingGate"}


def blessing(store, model_name: str) -> Optional[Dict[str, object]]:
  """The latest verdict for 'Retrieval' or 'Ranking': blessed, and why not."""
  report = latest_artifact(store, "ModelEvaluation", VERDICT_BY[model_name])
  if report is None:
    return None
  return {"blessed": bool(_property(report, "blessed")),
          "reasons": json.loads(_property(report, "reasons") or "[]")}


def describe_blessing(verdict: Optional[Dict[str, object]]) -> str:
  if verdict is None:
    return "not validated"
  if verdict["blessed"]:
    return "BLESSED"
  return "NOT BLESSED, not pushed: " + "; ".join(verdict["reasons"] or ["see TFMA output"])


def metrics_table(metrics: Dict[str, float], model_label: str = "two_tower") -> str:
  ks = (10, 50, 100)
  head = "  " + f"{'model':<12}" + "".join(f"{'HR@' + str(k):>9}{'NDCG@' + str(k):>9}" for k in ks)
  head += f"{'| sampled HR@10':>16}{'NDCG@10':>9}"
  lines = [head]
  for name in ("model", "popularity"):
    row = f"  {(model_label if name == 'model' else name):<12}"
    row += "".join(f"{metrics[f'{name}/hit_rate@{k}']:>9.4f}{metrics[f'{name}/ndcg@{k}']:>9.4f}"
                   for k in ks)
    row += f"{metrics[f'{name}/sampled_hit_rate@10']:>16.4f}{metrics[f'{name}/sampled_ndcg@10']:>9.4f}"
    lines.append(row)
  return "\n".join(lines)


def selection_table(metrics: Dict[str, float], chosen: str) -> str:
  """The candidate models' eval-split figures, from the RetrievalEvaluator's metrics."""
  names = sorted({key.split("/")[1] for key in metrics if key.startswith("selection/")},
                 key=lambda n: -metrics[f"selection/{n}/ndcg@10"])
  lines = [f"  {'model':<14}{'HR@10':>9}{'NDCG@10':>9}{'HR@50':>9}{'NDCG@50':>9}"]
  for name in names:
    row = "".join(f"{metrics.get(f'selection/{name}/{k}', float('nan')):>9.4f}"
                  for k in ("hit_rate@10", "ndcg@10", "hit_rate@50", "ndcg@50"))
    lines.append(f"  {name:<14}{row}" + ("   <- primary" if name == chosen else ""))
  return "\n".join(lines)


def describe_stages(config, store) -> List[str]:
  """Which stages serve after this run, and why."""
  retrieval = latest_pushed_model_dir(store)
  lines = [f"  retrieval stage: {describe_blessing(blessing(store, 'Retrieval'))}",
           f"    live: {retrieval or 'nothing pushed yet'}"]
  if not config.ranking.enabled:
    return lines + ["  ranking stage: disabled (ranking.enabled: false): the funnel serves "
                    "the retrieval order"]
  ranking = latest_pushed_model_dir(store, "RankingPusher")
  verdict = blessing(store, "Ranking")
  lines.append(f"  ranking stage ({config.ranking.architecture}): {describe_blessing(verdict)}")
  if ranking:
    lines.append(f"    live: {ranking}" + ("" if verdict and verdict["blessed"] else
                                             " (blessed in an earlier run)"))
  else:
    lines.append("    live: none, so the funnel serves the retrieval order")
  return lines


def describe_recommender(store) -> List[str]:
  """The recommender servable composed after the pushes (one Predict per recommendation)."""
  push = latest_push(store, "RecommenderComposer")
  if push is None:
    return ["  recommender (the funnel in one servable): none composed yet"]
  return [f"  recommender (the funnel in one servable): {_property(push, 'pushed_destination')}",
          f"    composes retrieval v{_property(push, 'retrieval_version')}; "
          f"{_property(push, 'ranking')}"]


def print_summary(config, data, wall_seconds: float) -> Dict[str, object]:
  store = open_store(config.metadata_path)
  pushed = latest_pushed_model_dir(store)
  metrics = latest_metrics(store)
  print("\n" + "=" * 78)
  print(f"Run summary ({config.pipeline_name}, data: {data.name}, seed {config.seed})")
  dropped = (f" ({data.duplicates_dropped:,} exact duplicate rows dropped)"
             if data.duplicates_dropped else "")
  print(f"  data: {len(data.interactions):,} interactions{dropped}, "
        f"{data.interactions[feats.USER_ID].nunique():,} users, {len(data.items):,} catalogue items")
  retrieval_verdict = blessing(store, "Retrieval")
  ranking_verdict = blessing(store, "Ranking") if config.ranking.enabled else None
  print("\n".join(describe_stages(config, store) + describe_recommender(store)))
  print(f"  ML Metadata: {os.path.abspath(config.metadata_path)}")
  evaluation = latest_artifact(store, "ModelEvaluation", "RetrievalEvaluator")
  chosen = _property(evaluation, "selected_model") if evaluation else None
  if metrics and len({k.split("/")[1] for k in metrics if k.startswith("selection/")}) > 1:
    print(f"\nRetrieval models trained (trainer.models), on the eval split (each user's "
          f"second-to-last interaction, full catalogue); the best NDCG@10 is the primary, "
          f"all are candidate sources:")
    print(selection_table(metrics, chosen))
  if metrics:
    print(f"\nRetrieval on the held-out test split ({metrics['users_evaluated']:,} users; "
          f"full catalogue of {metrics['catalogue_size']:,} items minus each user's training "
          f"items; 'sampled' = vs 100 sampled negatives):")
    print(metrics_table(metrics, chosen or config.trainer.model))
    if "scann_recall@10" in metrics:
      print(f"  ScaNN top-10 vs exact brute-force top-10: recall {metrics['scann_recall@10']:.4f}")
    else:
      print("  top-K index: exact (brute force), so no ScaNN recall to report")
  ranking_metrics = latest_metrics(store, "RankingGate") if config.ranking.enabled else None
  if ranking_metrics:
    print(f"\nRanking: ordering each held-out user's candidate list (the retrieval model's "
          f"candidates minus what the user saw before), on the "
          f"{ranking_metrics['lists_with_target']:,} lists of "
          f"{ranking_metrics['users']:,} users that hold the held-out item "
          f"({ranking_metrics['candidates_with_target']:.1%}):")
    print(ranking_gate.ranking_table(ranking_metrics, config.ranking.architecture))
  print(f"\nWall time: {wall_seconds:.0f}s")
  print("=" * 78)
  return {"pushed_model": pushed, "metrics": metrics,
          "duplicates_dropped": data.duplicates_dropped,
          "ranking_model": latest_pushed_model_dir(store, "RankingPusher"),
          "ranking_metrics": ranking_metrics, "retrieval_blessing": retrieval_verdict,
          "ranking_blessing": ranking_verdict, "selected_model": chosen}
