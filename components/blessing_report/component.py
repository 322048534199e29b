"""BlessingReport: says in words why TFMA did or did not bless a model, and records it in
ML Metadata (custom properties `blessed` and `reasons` of its output artifact), so the
CLI summary, `recsys metadata` and anyone reading MLMD see which threshold failed and by
how much."""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from recsys_tfx.components.blessing_report import executor


class BlessingReportSpec(types.ComponentSpec):
  PARAMETERS = {}
  INPUTS = {"evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
            "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing)}
  OUTPUTS = {"report": ChannelParameter(type=standard_artifacts.ModelEvaluation)}


class BlessingReport(base_component.BaseComponent):
  SPEC_CLASS = BlessingReportSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, evaluation: types.BaseChannel, blessing: types.BaseChannel):
    """Args:
      evaluation: the TFMA Evaluator's ModelEvaluation (its validation result is read).
      blessing: the same Evaluator's ModelBlessing.
    """
    super().__init__(spec=BlessingReportSpec(
        evaluation=evaluation, blessing=blessing,
        report=types.Channel(type=standard_artifacts.ModelEvaluation)))
