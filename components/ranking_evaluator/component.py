"""RankingEvaluator: how well the ranker orders candidates for the held-out test item,
beside the retrieval score alone and popularity, on the same users and candidates.

Two protocols, reported separately:
  sampled  the held-out item among 100 sampled items the user has not interacted with
           in training (the protocol of the NCF / SASRec papers)
  rerank   the retrieval model's top-100 (the user's training items removed), as the
           serving funnel sees it; a held-out item that retrieval missed counts as a miss

Output: a ModelEvaluation artifact holding metrics.json; the headline figures are MLMD
custom properties.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from recsys_tfx.components import checks
from recsys_tfx.components.ranking_evaluator import executor


class RankingEvaluatorSpec(types.ComponentSpec):
  PARAMETERS = {"seed": ExecutionParameter(type=int)}
  INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples),
            "retrieval_model": ChannelParameter(type=standard_artifacts.Model),
            "ranking_model": ChannelParameter(type=standard_artifacts.Model),
            "schema": ChannelParameter(type=standard_artifacts.Schema)}
  OUTPUTS = {"evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation)}


class RankingEvaluator(base_component.BaseComponent):
  SPEC_CLASS = RankingEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, retrieval_model: types.BaseChannel,
               ranking_model: types.BaseChannel, schema: types.BaseChannel, seed: int = 0):
    """Args:
      examples: TimeSplitExampleGen's Examples (train and test splits are read).
      retrieval_model: the retrieval Model whose top-K the ranker re-orders.
      ranking_model: the ranking Model to score.
      schema: the curated Schema (names the context features).
      seed: of the sampled negatives and the popularity tie-break.
    """
    checks.integer("RankingEvaluator", "seed", seed, minimum=0)
    super().__init__(spec=RankingEvaluatorSpec(
        examples=examples, retrieval_model=retrieval_model, ranking_model=ranking_model,
        schema=schema, seed=seed,
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation)))
