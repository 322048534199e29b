"""RankingEvalExamples: the lists the ranker is judged on, as the serving funnel builds
them, for the held-out test interactions.

For each test user it asks the retrieval model for its candidates (the union of its
sources' top-K, in the retrieval order; with the example's own history, the items before
it, when the model reads history) and drops what the user interacted with before, as the
funnel's seen filter does. Where the held-out item is among them, it writes one
tf.Example per candidate: the test example with the item and its features swapped,
label 1 for the held-out item and 0 for the others, each source's score and rank
(`source_scores`, `source_ranks`), its place in the retrieval order
(`retrieval_position`) and its popularity (`popularity_score`). A list without the
held-out item is not written: no re-ordering can show it (its share is recorded as the
artifact's `lists_with_target` of `users`).

Two splits: `test` holds every list (the RankingGate judges on them); `sample` a seeded
sample of `sample_users` users' lists (TFMA reports on them: its per-user metrics hold
every example in memory, about 3 GiB per 200,000 candidates).
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from recsys_tfx.components import checks
from recsys_tfx.components.ranking_eval_examples import executor


class RankingEvalExamplesSpec(types.ComponentSpec):
  PARAMETERS = {"data_dir": ExecutionParameter(type=str),
                "seed": ExecutionParameter(type=int),
                "sample_users": ExecutionParameter(type=int)}
  INPUTS = {"examples": ChannelParameter(type=standard_artifacts.Examples),
            "retrieval_model": ChannelParameter(type=standard_artifacts.Model),
            "schema": ChannelParameter(type=standard_artifacts.Schema)}
  OUTPUTS = {"ranking_examples": ChannelParameter(type=standard_artifacts.Examples)}


class RankingEvalExamples(base_component.BaseComponent):
  SPEC_CLASS = RankingEvalExamplesSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, examples: types.BaseChannel, retrieval_model: types.BaseChannel,
               schema: types.BaseChannel, data_dir: str, seed: int = 0,
               sample_users: int = 300):
    """Args:
      examples: TimeSplitExampleGen's Examples (train, eval and test splits are read).
      retrieval_model: the retrieval Model whose candidates the ranker re-orders.
      schema: the curated Schema (types the item features of the candidates).
      data_dir: the canonical data directory (its items.csv is the catalogue).
      seed: of the popularity tie-break and of the user sample.
      sample_users: how many users' lists TFMA evaluates (0 = all).
    """
    name = "RankingEvalExamples"
    checks.non_empty(name, "data_dir", data_dir)
    checks.integer(name, "seed", seed, minimum=0)
    checks.integer(name, "sample_users", sample_users, minimum=0)
    super().__init__(spec=RankingEvalExamplesSpec(
        examples=examples, retrieval_model=retrieval_model, schema=schema, data_dir=data_dir,
        seed=seed, sample_users=sample_users,
        ranking_examples=types.Channel(type=standard_artifacts.Examples)))
