"""AnomalyGate names what ExampleValidator found; TFDV runs for real on a small frame."""
import os

import pandas as pd
import tensorflow_data_validation as tfdv
from tfx.types import standard_artifacts
from tfx.types import artifact_utils

from recsys_tfx.components.anomaly_gate.executor import ANOMALIES_FILE, describe_anomalies
from recsys_tfx.schema.features import SCHEMA_DIR
from recsys_tfx.schema import features as feats


def _anomalies_artifact(tmp_path, frame):
  schema = feats.load_schema(os.path.join(SCHEMA_DIR, "interactions", "schema.pbtxt"))
  stats = tfdv.generate_statistics_from_dataframe(frame)
  anomalies = tfdv.validate_statistics(stats, schema)
  artifact = standard_artifacts.ExampleAnomalies()
  artifact.uri = str(tmp_path)
  artifact.split_names = artifact_utils.encode_split_names(["train"])
  split_dir = artifact_utils.get_split_uri([artifact], "train")
  os.makedirs(split_dir)
  with open(os.path.join(split_dir, ANOMALIES_FILE), "wb") as f:
    f.write(anomalies.SerializeToString())
  return artifact


def _frame(**overrides):
  frame = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, 2],
                        "hour": [3, 4], "label": [1.0, 1.0], "genres": ["g", "h"], "year": [0, 0],
                        "item_popularity": ["cold", "mid"], "user_activity": ["new", "new"],
                        "daypart": ["night", "night"]})
  for k, v in overrides.items():
    frame[k] = v
  return frame


def test_clean_data_has_no_anomalies(tmp_path):
  assert describe_anomalies(_anomalies_artifact(tmp_path, _frame())) == []


def test_out_of_domain_and_unexpected_columns_are_named(tmp_path):
  problems = describe_anomalies(_anomalies_artifact(tmp_path, _frame(hour=[3, 99], shoe_size=[1, 2])))
  text = "\n".join(problems)
  assert "feature 'hour'" in text and "split 'train'" in text
  assert "feature 'shoe_size'" in text
