"""RankingGate: a ranker serves only if it improves on what users would get without it.

On every held-out test user's candidate list (RankingEvalExamples: the retrieval
model's candidates as the funnel builds them, where they hold the held-out item), it
compares the ranker's order with the retrieval order, popularity's, and the last blessed
ranker's on the same lists (trainer/metrics.py: HR/NDCG@10, ties against the order).
The ranker is blessed when
  - its NDCG@10 beats the retrieval order's by more than `min_rerank_lift`,
  - it is not worse than the last blessed ranker's by more than `max_regression`, and
  - the retrieval model whose candidates it re-orders was blessed itself.
Otherwise it is not pushed, and the funnel serves the retrieval order.

Outputs: a ModelBlessing the Pusher and the LatestBlessedModelStrategy resolver read
(`blessed`, `current_model_id`, and `reasons`), and a ModelEvaluation with every order's
figures (metrics.json, headline figures as MLMD custom properties, `blessed`, `reasons`).
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from recsys_tfx.components.ranking_gate import executor


class RankingGateSpec(types.ComponentSpec):
  PARAMETERS = {"min_rerank_lift": ExecutionParameter(type=float),
                "max_regression": ExecutionParameter(type=float)}
  INPUTS = {"ranking_examples": ChannelParameter(type=standard_artifacts.Examples),
            "model": ChannelParameter(type=standard_artifacts.Model),
            "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
            "retrieval_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing)}
  OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
             "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation)}


class RankingGate(base_component.BaseComponent):
  SPEC_CLASS = RankingGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, ranking_examples: types.BaseChannel, model: types.BaseChannel,
               retrieval_blessing: types.BaseChannel,
               baseline_model: types.BaseChannel = None, min_rerank_lift: float = 0.0,
               max_regression: float = 0.0):
    """Args:
      ranking_examples: RankingEvalExamples' candidate lists.
      model: the ranking Model to judge.
      retrieval_blessing: the blessing of the retrieval model that made the lists.
      baseline_model: the last blessed ranking Model (a resolver's output; may be empty).
      min_rerank_lift: NDCG@10 over the retrieval order's that the ranker must exceed,
        in [-1, 1].
      max_regression: how much below the last blessed ranker's NDCG@10 is tolerated,
        in [0, 1].
    """
    for name, value, low in (("min_rerank_lift", min_rerank_lift, -1.0),
                             ("max_regression", max_regression, 0.0)):
      if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= 1:
        raise ValueError(f"RankingGate: {name} must be a number in [{low:g}, 1], got {value!r}")
    super().__init__(spec=RankingGateSpec(
        ranking_examples=ranking_examples, model=model, baseline_model=baseline_model,
        retrieval_blessing=retrieval_blessing, min_rerank_lift=float(min_rerank_lift),
        max_regression=float(max_regression),
        blessing=types.Channel(type=standard_artifacts.ModelBlessing),
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation)))
