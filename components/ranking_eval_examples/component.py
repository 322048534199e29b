"""RankingEvalExamples: labelled examples for validating a ranker with TFMA.

For each held-out test interaction it writes the positive (label 1) and `negatives`
items the user never interacted with in training (label 0), sampled from the catalogue
with a fixed seed the way the ranker's training negatives are (`sampling`: uniform,
popularity or mixed — trainer/ranking_data.py), so AUC measures the distinction the
ranker was trained for rather than "popular vs. random". Each negative is the positive
example with the item and its features swapped (user, context and the user's slice
features stay). TFMA then computes AUC and NDCG@K per user (query = user_id) over these
groups.

`max_users` (> 0) keeps a seeded sample of that many held-out users. TFMA's per-user
metrics group every example by user in the memory of the Evaluator's in-process Beam job
(about 3 GiB per 10,000 users at 20 negatives), so without a cap RankingValidator's
memory and time grow with the data: ~10 GiB at 1M interactions, ~40 GiB at 5M.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from recsys_tfx.components import checks
from recsys_tfx.components.ranking_eval_examples import executor
from recsys_tfx.trainer.config import NEGATIVE_SAMPLING


class RankingEvalExamplesSpec(types.ComponentSpec):
  PARAMETERS = {"data_dir": ExecutionParameter(type=str),
                "negatives": ExecutionParameter(type=int),
                "sampling": ExecutionParameter(type=str),
                "seed": ExecutionParameter(type=int),
                "max_users": ExecutionParameter(type=int)}
  INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples),
            "schema": ChannelParameter(type=standard_artifacts.Schema)}
  OUTPUTS = {"ranking_examples": ChannelParameter(type=standard_artifacts.Examples)}


class RankingEvalExamples(base_component.BaseComponent):
  SPEC_CLASS = RankingEvalExamplesSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, schema: types.BaseChannel, data_dir: str,
               negatives: int = 20, sampling: str = "uniform", seed: int = 0,
               max_users: int = 0):
    """Args:
      examples: TimeSplitExampleGen's Examples (train and test splits are read).
      schema: the curated Schema (types the item features of the negatives).
      data_dir: the canonical data directory (its items.csv is the catalogue).
      negatives: sampled negatives per held-out positive (>= 1).
      sampling: uniform | popularity | mixed.
      seed: of the negatives and of the user sample.
      max_users: keep a seeded sample of this many held-out users (0 = all).
    """
    name = "RankingEvalExamples"
    checks.non_empty(name, "data_dir", data_dir)
    checks.integer(name, "negatives", negatives, minimum=1)
    checks.one_of(name, "sampling", sampling, NEGATIVE_SAMPLING)
    checks.integer(name, "seed", seed, minimum=0)
    checks.integer(name, "max_users", max_users, minimum=0)
    super().__init__(spec=RankingEvalExamplesSpec(
        examples=examples, schema=schema, data_dir=data_dir, negatives=negatives,
        sampling=sampling, seed=seed, max_users=max_users,
        ranking_examples=types.Channel(type=standard_artifacts.Examples)))
