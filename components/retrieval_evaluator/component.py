"""RetrievalEvaluator: scores the exported retrieval model and a popularity baseline on
the held-out `test` split, with the same protocol for both (trainer/metrics.py:
full-catalogue and sampled HR/NDCG@K, ties counting against the model), and measures
how well the ScaNN index inside the SavedModel agrees with exact brute-force search over
the same embeddings (recall@10 of ScaNN's top-10; a model exported with an exact index,
the baselines, has no such figure).

Output: a ModelEvaluation artifact holding metrics.json, with the headline figures also
recorded as custom properties so MLMD shows them.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from recsys_tfx.components import checks
from recsys_tfx.components.retrieval_evaluator import executor


class RetrievalEvaluatorSpec(types.ComponentSpec):
  PARAMETERS = {"seed": ExecutionParameter(type=int)}
  INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples),
            "model": ChannelParameter(type=standard_artifacts.Model),
            "schema": ChannelParameter(type=standard_artifacts.Schema)}
  OUTPUTS = {"evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation)}


class RetrievalEvaluator(base_component.BaseComponent):
  SPEC_CLASS = RetrievalEvaluatorSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
               schema: types.BaseChannel, seed: int = 0):
    """Args:
      examples: TimeSplitExampleGen's Examples (train and test splits are read).
      model: the retrieval Model to score.
      schema: the curated Schema (names the context and history features).
      seed: of the sampled negatives and the popularity tie-break.
    """
    checks.integer("RetrievalEvaluator", "seed", seed, minimum=0)
    super().__init__(spec=RetrievalEvaluatorSpec(
        examples=examples, model=model, schema=schema, seed=seed,
        evaluation=types.Channel(type=standard_artifacts.ModelEvaluation)))
