"""RecommenderComposer: after the pushers, writes the `recommender` servable — the whole
funnel in one SavedModel (trainer/funnel_export.py) — from the retrieval and ranking
versions that are live in the serving directory, as a new version of
<serving_dir>/recommender/, so one Predict answers a recommendation.

It composes what is live, not what this run trained: a run whose ranker was not blessed
still gets a recommender over the last blessed one (or the retrieval order alone). When
the latest recommender already composes the live versions it writes nothing. The new
version is written under a name that is not a version number and renamed when complete,
so a server never loads half of it. Its PushedModel artifact (inputs: the pushers'
PushedModels) records the versions composed, for MLMD lineage.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from recsys_tfx.components import checks
from recsys_tfx.components.recommender_composer import executor


class RecommenderComposerSpec(types.ComponentSpec):
  PARAMETERS = {"serving_dir": ExecutionParameter(type=str),
                "data_dir": ExecutionParameter(type=str)}
  INPUTS = {"retrieval_pushed": ChannelParameter(type=standard_artifacts.PushedModel),
            "ranking_pushed": ChannelParameter(type=standard_artifacts.PushedModel,
                                               optional=True)}
  OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class RecommenderComposer(base_component.BaseComponent):
  SPEC_CLASS = RecommenderComposerSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, retrieval_pushed: types.BaseChannel, serving_dir: str, data_dir: str,
               ranking_pushed: types.BaseChannel = None):
    """Args:
      retrieval_pushed: the RetrievalPusher's PushedModel (for lineage and ordering).
      serving_dir: the serving directory the pushers write (local path or bucket URI).
      data_dir: the canonical data (seen items, genres and release years for the rules).
      ranking_pushed: the RankingPusher's PushedModel, when there is a ranking stage.
    """
    checks.non_empty("RecommenderComposer", "serving_dir", serving_dir)
    checks.non_empty("RecommenderComposer", "data_dir", data_dir)
    super().__init__(spec=RecommenderComposerSpec(
        retrieval_pushed=retrieval_pushed, ranking_pushed=ranking_pushed,
        serving_dir=serving_dir, data_dir=data_dir,
        pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
