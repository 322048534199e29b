"""AnomalyGate: stops the run when ExampleValidator found anomalies.

ExampleValidator only records anomalies; TFX carries on regardless. Transform depends on
this gate, so data that breaks the schema never reaches training, and the error names
each anomalous feature, the split and TFDV's description of the problem.
"""
import os
from typing import List

import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

ExampleAnomalies = tfx.types.standard_artifacts.ExampleAnomalies
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


@tfx.dsl.components.component
def AnomalyGate(anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies]):
  problems = describe_anomalies(anomalies)
  if problems:
    raise DataAnomalyError(
        "ExampleValidator found data that does not match the schema; stopping before "
        "Transform and training:\n  " + "\n  ".join(problems))
  print("AnomalyGate: no anomalies in any split", flush=True)
