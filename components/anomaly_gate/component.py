"""AnomalyGate: stops the run when ExampleValidator found anomalies.

ExampleValidator only records anomalies; TFX carries on regardless. Transform depends on
this gate, so data that breaks the schema never reaches training, and the error names
each anomalous feature, the split and TFDV's description of the problem.
"""
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter

from recsys_tfx.components.anomaly_gate import executor


class AnomalyGateSpec(types.ComponentSpec):
  PARAMETERS = {}
  INPUTS = {"anomalies": ChannelParameter(type=standard_artifacts.ExampleAnomalies)}
  OUTPUTS = {}


class AnomalyGate(base_component.BaseComponent):
  SPEC_CLASS = AnomalyGateSpec
  EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

  def __init__(self, anomalies: types.BaseChannel):
    """Args:
      anomalies: ExampleValidator's ExampleAnomalies.
    """
    super().__init__(spec=AnomalyGateSpec(anomalies=anomalies))
