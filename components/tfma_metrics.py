"""TFMA metrics over full-catalogue ranks.

The retrieval model's `evaluate_examples` signature returns, per held-out example,
ranks = [model rank, popularity rank] (0-based, among the catalogue minus the user's
training items). These Keras metrics turn ranks into means that TFMA aggregates and
slices like any other metric. With one held-out item per user, Recall@K equals
HitRate@K and AP@K is 1 / (rank + 1) inside the top K.

The model TFMA loads holds ScaNN ops, so the process that loads it must have imported
scann. This module does; on the DirectRunner the pipeline runs the Evaluator's Beam job
in-process (see pipeline/pipeline.py) so that import is in effect there. On a distributed Beam runner,
the worker image must import scann too (e.g. a Beam --setup_file that installs it and a
worker start-up hook).
"""
import scann  # noqa: F401  registers ScaNN's ops wherever TFMA loads the retrieval model
import tensorflow as tf

MODEL, POPULARITY = 0, 1
METRICS = ("hit_rate", "ndcg", "recall", "map", "hit_rate_lift")


def _gain(metric: str, rank: tf.Tensor, k: int) -> tf.Tensor:
  inside = rank < k
  if metric in ("hit_rate", "recall"):
    value = tf.ones_like(rank)
  elif metric == "ndcg":
    value = 1.0 / (tf.math.log(rank + 2.0) / tf.math.log(2.0))
  else:  # map
    value = 1.0 / (rank + 1.0)
  return tf.where(inside, value, tf.zeros_like(rank))


class RankMetric(tf.keras.metrics.Mean):
  """Mean per-example gain at K from the rank column of the predictions.

  metric: hit_rate | ndcg | recall | map (of the model's ranks), or hit_rate_lift: the
  model's hit rate minus popularity's on the same examples (> 0: beats popularity).
  """

  def __init__(self, metric: str = "hit_rate", k: int = 10, name=None, dtype=None):
    if metric not in METRICS:
      raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    super().__init__(name=name or f"{metric}@{k}", dtype=dtype)
    self.metric, self.k = metric, int(k)

  def update_state(self, y_true, y_pred, sample_weight=None):
    ranks = tf.reshape(tf.cast(y_pred, tf.float32), [-1, 2])
    if self.metric == "hit_rate_lift":
      value = (_gain("hit_rate", ranks[:, MODEL], self.k)
               - _gain("hit_rate", ranks[:, POPULARITY], self.k))
    else:
      value = _gain(self.metric, ranks[:, MODEL], self.k)
    return super().update_state(value, sample_weight=sample_weight)

  def get_config(self):
    return {**super().get_config(), "metric": self.metric, "k": self.k}
