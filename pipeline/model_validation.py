"""The TFMA EvalConfigs that decide whether a model is blessed (and so pushed).

Retrieval (eval_config):

A model is blessed when, on the held-out test split (full-catalogue ranks from the model's
`evaluate_examples` signature, see components/tfma_metrics.py):
  - it beats popularity: hit_rate_lift@10 (its HR@10 minus popularity's) >= the configured
    minimum, which a popularity model (lift 0) fails;
  - it clears any extra absolute lower bounds (`thresholds`, e.g. {"ndcg@10": 0.02});
  - it is not worse than the latest blessed model by more than `max_regression` (absolute),
    for each metric listed there; the first run has no baseline and is judged on the
    absolute thresholds alone.

Ranking (ranking_eval_config): TFMA reports on a sample of the held-out users' candidate
lists (components/ranking_eval_examples): NDCG@K per user (TFMA's query-based metric),
AUC and example counts, overall and per user slice, beside the latest blessed ranker.
What blesses a ranker is the RankingGate (components/ranking_gate): its re-ordering
must beat the retrieval order on every held-out list.
"""
import json
from typing import Dict, List

import tensorflow_model_analysis as tfma

from recsys_tfx.components import tfma_metrics

METRICS_MODULE = tfma_metrics.__name__
RANK_METRICS = ("hit_rate", "ndcg", "recall", "map")


def parse_metric_key(key: str):
  """'ndcg@10' -> ('ndcg', 10), with a message naming what is wrong otherwise."""
  name, at, k = key.partition("@")
  if not at or name not in tfma_metrics.METRICS:
    raise ValueError(f"unknown metric {key!r}; expected <metric>@<K> with metric one of "
                     f"{tfma_metrics.METRICS}")
  if not k.isdigit() or int(k) <= 0:
    raise ValueError(f"metric {key!r}: K must be a positive integer, got {k!r}")
  return name, int(k)


def check(validation, schema_features: List[str]) -> None:
  """Raises ValueError naming the bad value (called when the pipeline is built)."""
  for k in validation.ks:
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
      raise ValueError(f"validation.ks: K must be a positive integer, got {k!r}")
  for name in validation.metrics:
    if name not in RANK_METRICS:
      raise ValueError(f"validation.metrics: unknown metric {name!r}; expected {RANK_METRICS}")
  for feature in validation.slices:
    if feature not in schema_features:
      raise ValueError(f"validation.slices: feature {feature!r} is not in the schema; "
                       f"allowed: {sorted(schema_features)}")
  for key in list(validation.thresholds) + list(validation.max_regression):
    parse_metric_key(key)


def _metric(name: str, k: int, threshold=None) -> tfma.MetricConfig:
  # Thresholds judge the overall slice only; per-slice values are reported, not gated.
  per_slice = _overall_threshold(threshold) if threshold else []
  return tfma.MetricConfig(class_name="RankMetric", module=METRICS_MODULE,
                           config=json.dumps({"metric": name, "k": k, "name": f"{name}@{k}"}),
                           per_slice_thresholds=per_slice)


def eval_config(validation) -> tfma.EvalConfig:
  lower_bounds: Dict[str, float] = {"hit_rate_lift@10": validation.min_hit_rate_lift_at_10,
                                    **validation.thresholds}
  keys = [f"{m}@{k}" for m in validation.metrics for k in validation.ks]
  keys += [k for k in list(lower_bounds) + list(validation.max_regression) if k not in keys]
  metrics = []
  for key in keys:
    name, k = parse_metric_key(key)
    value = (tfma.GenericValueThreshold(lower_bound={"value": lower_bounds[key]})
             if key in lower_bounds else None)
    change = (tfma.GenericChangeThreshold(
        direction=tfma.MetricDirection.HIGHER_IS_BETTER,
        absolute={"value": -validation.max_regression[key]})
        if key in validation.max_regression else None)
    threshold = (tfma.MetricThreshold(value_threshold=value, change_threshold=change)
                 if value or change else None)
    metrics.append(_metric(name, k, threshold))
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name="evaluate_examples", label_key="label",
                                  prediction_key="ranks")],
      slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f])
                                            for f in validation.slices],
      metrics_specs=[tfma.MetricsSpec(metrics=metrics)])


def _overall_threshold(threshold: tfma.MetricThreshold):
  return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)]


def ranking_eval_config(validation) -> tfma.EvalConfig:
  user_slices = [f for f in validation.slices if f != "item_popularity"]  # per list, not item
  return tfma.EvalConfig(
      model_specs=[tfma.ModelSpec(signature_name="score_examples", label_key="label",
                                  prediction_key="scores")],
      slicing_specs=[tfma.SlicingSpec()] + [tfma.SlicingSpec(feature_keys=[f])
                                            for f in user_slices],
      metrics_specs=[
          tfma.MetricsSpec(metrics=[tfma.MetricConfig(class_name="AUC"),
                                    tfma.MetricConfig(class_name="ExampleCount")]),
          tfma.MetricsSpec(query_key="user_id", metrics=[
              tfma.MetricConfig(class_name="NDCG", config=json.dumps(
                  {"gain_key": "label", "top_k_list": list(validation.ks)}))]),
      ])
