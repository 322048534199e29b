"""The end-of-run summary, read back from ML Metadata: where the model was pushed, what it
scored next to popularity, and top-10 recommendations for a few users."""
import json
import os
from typing import Dict, List, Optional

import numpy as np
import pandas as pd
from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata

from recsys_tfx.components.ranking_evaluator import executor as ranking_evaluator
from recsys_tfx.trainer import export
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


def latest_pushed_model_dir(store, pusher: str = "RetrievalPusher") -> Optional[str]:
  """Where the live model is: the newest push that really happened (a Pusher that got an
  unblessed model records an artifact with pushed=0)."""
  pushes = [a for a in store.get_artifacts_by_type("PushedModel")
            if a.state == a.LIVE and f"/{pusher}/" in a.uri and _property(a, "pushed") == 1]
  return _property(max(pushes, key=lambda a: a.id), "pushed_destination") if pushes else None


def latest_metrics(store, evaluator: str = "RetrievalEvaluator") -> Optional[Dict[str, float]]:
  evaluation = latest_artifact(store, "ModelEvaluation", evaluator)
  if evaluation is None:
    return None
  with open(os.path.join(evaluation.uri, "metrics.json")) as f:
    return json.load(f)


def blessing(store, model_name: str) -> Optional[Dict[str, object]]:
  """The latest TFMA verdict for 'Retrieval' or 'Ranking': blessed, and why not."""
  report = latest_artifact(store, "ModelEvaluation", f"{model_name}BlessingReport")
  if report is None:
    return None
  return {"blessed": bool(_property(report, "blessed")),
          "reasons": json.loads(_property(report, "reasons") or "[]")}


def describe_blessing(verdict: Optional[Dict[str, object]]) -> str:
  if verdict is None:
    return "not validated"
  if verdict["blessed"]:
    return "BLESSED by TFMA"
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


def recommend(model_dir: str, user_ids: List[str], k: int = 10, model=None) -> List[List[dict]]:
  model = model or export.load_model(model_dir)
  out = model.signatures["serving_default"](user_id=np.array(user_ids, dtype=object))
  ids, scores = out["item_ids"].numpy()[:, :k], out["scores"].numpy()[:, :k]
  return [[{"item_id": i.decode(), "score": float(s)} for i, s in zip(row_ids, row_scores)]
          for row_ids, row_scores in zip(ids, scores)]


def describe_recommendations(recs: List[dict], titles: Dict[str, str]) -> List[str]:
  return [f"     {r + 1:>2}. {rec['item_id']:<10} {rec['score']:7.3f}  {titles.get(rec['item_id'], '')}"
          for r, rec in enumerate(recs)]


def print_summary(config, data, wall_seconds: float, example_users: int = 3) -> Dict[str, object]:
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
  print(f"  retrieval model: {describe_blessing(retrieval_verdict)}")
  print(f"  live retrieval model: {pushed}")
  ranking_pushed = latest_pushed_model_dir(store, "RankingPusher")
  ranking_verdict = blessing(store, "Ranking") if config.ranking.enabled else None
  if config.ranking.enabled:
    print(f"  ranking model ({config.ranking.architecture}): {describe_blessing(ranking_verdict)}")
    print(f"  live ranking model: {ranking_pushed}")
  print(f"  ML Metadata: {os.path.abspath(config.metadata_path)}")
  if metrics:
    print(f"\nRetrieval on the held-out test split ({metrics['users_evaluated']:,} users; "
          f"full catalogue of {metrics['catalogue_size']:,} items minus each user's training "
          f"items; 'sampled' = vs 100 sampled negatives):")
    print(metrics_table(metrics, config.trainer.model))
    if "scann_recall@10" in metrics:
      print(f"  ScaNN top-10 vs exact brute-force top-10: recall {metrics['scann_recall@10']:.4f}")
    else:
      print("  top-K index: exact (brute force), so no ScaNN recall to report")
  ranking_metrics = latest_metrics(store, "RankingEvaluator") if config.ranking.enabled else None
  if ranking_metrics:
    print(f"\nRanking on the same test users ('rerank' = ordering the retrieval top-100 minus "
          f"training items, {ranking_metrics['rerank/candidates_with_target']:.1%} of which hold "
          f"the held-out item; 'sampled' = vs 100 sampled negatives):")
    print(ranking_evaluator.ranking_table(ranking_metrics, config.ranking.architecture))
  if pushed:
    users = sorted(data.interactions[feats.USER_ID].unique())[:example_users]
    titles = dict(zip(data.items[feats.ITEM_ID], data.items.get("title", pd.Series(dtype=str))))
    print("\nTop-10 recommendations from the pushed model:")
    for user, recs in zip(users, recommend(pushed, users)):
      print(f"  user {user}:")
      print("\n".join(describe_recommendations(recs, titles)))
  print(f"\nWall time: {wall_seconds:.0f}s")
  print("=" * 78)
  return {"pushed_model": pushed, "metrics": metrics,
          "duplicates_dropped": data.duplicates_dropped, "ranking_model": ranking_pushed,
          "ranking_metrics": ranking_metrics, "retrieval_blessing": retrieval_verdict,
          "ranking_blessing": ranking_verdict}
