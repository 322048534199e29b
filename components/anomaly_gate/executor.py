"""AnomalyGate's executor: raises DataAnomalyError naming every anomaly
ExampleValidator recorded, or prints that there were none."""
import os
from typing import Any, Dict, List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

ANOMALIES_FILE = "SchemaDiff.pb"


class DataAnomalyError(RuntimeError):
  pass


def describe_anomalies(anomalies_artifact: Artifact) -> List[str]:
  problems = []
  for split in artifact_utils.decode_split_names(anomalies_artifact.split_names):
    path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE)
    anomalies = anomalies_pb2.Anomalies.FromString(tf.io.gfile.GFile(path, "rb").read())
    for feature, info in sorted(anomalies.anomaly_info.items()):
      reasons = "; ".join(r.description or r.short_description for r in info.reason)
      problems.append(f"split '{split}', feature '{feature}': {info.short_description} ({reasons})")
    if anomalies.HasField("dataset_anomaly_info"):
      info = anomalies.dataset_anomaly_info
      problems.append(f"split '{split}', dataset: {info.short_description}")
  return problems


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    check(artifact_utils.get_single_instance(input_dict["anomalies"]))


def check(anomalies: Artifact) -> None:
  problems = describe_anomalies(anomalies)
  if problems:
    raise DataAnomalyError(
        "ExampleValidator found data that does not match the schema; stopping before "
        "Transform and training:\n  " + "\n  ".join(problems))
  print("AnomalyGate: no anomalies in any split", flush=True)
