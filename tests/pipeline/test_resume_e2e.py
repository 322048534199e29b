"""An interrupted run resumes: a small `recsys run` is SIGKILLed while RetrievalTrainer
runs, shows as ABANDONED (not RUNNING), and the same command run again completes,
reusing every component that had finished (TFX's cache), with ML Metadata consistent:
nothing left RUNNING, the killed execution's partial output gone and never an input."""
import json
import os
import subprocess

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd
from tfx.orchestration import metadata as tfx_metadata

from pipeline_run import run_killed_during, small_run_command
from recsys_tfx import cli

pytestmark = pytest.mark.e2e

UPSTREAM = ("ImportSchemaGen", "TimeSplitExampleGen", "StatisticsGen", "ExampleValidator",
            "AnomalyGate", "Transform")


def _runs(capsys, root):
  assert cli.main(["metadata", "runs", "--pipeline-root", root, "--json"]) == 0
  return json.loads(capsys.readouterr().out)


def test_a_run_killed_mid_trainer_resumes_reusing_what_finished(tmp_path, capsys):
  command = small_run_command(tmp_path)
  root = str(tmp_path / "pipeline")
  assert run_killed_during(command, str(tmp_path / "first.log"), "RetrievalTrainer"), \
      (tmp_path / "first.log").read_text()
  partial = os.listdir(os.path.join(root, "RetrievalTrainer", "model"))
  assert partial, "the killed trainer left its (partial) model directory"

  [killed] = _runs(capsys, root)
  assert killed["status"] == "ABANDONED"
  states = {c["component"]: c["state"] for c in killed["components"]}
  assert states["RetrievalTrainer"] == "ABANDONED"
  assert all(states[c] == "COMPLETE" for c in UPSTREAM)

  rerun = subprocess.run(command, capture_output=True, text=True, timeout=900)
  assert rerun.returncode == 0, rerun.stdout + rerun.stderr
  assert "an earlier run was interrupted in RetrievalTrainer" in rerun.stdout
  for component in UPSTREAM:
    assert f"<- {component} reused its earlier output (cached)" in rerun.stdout
  assert "<- RetrievalTrainer finished" in rerun.stdout
  assert "Run summary" in rerun.stdout

  first, second = _runs(capsys, root)
  assert (first["status"], second["status"]) == ("ABANDONED", "COMPLETE")
  assert set(second["cached"]) == set(UPSTREAM)
  assert {c["component"]: c["state"] for c in second["components"]}["RetrievalTrainer"] \
      == "COMPLETE"

  # ML Metadata is consistent.
  config = tfx_metadata.sqlite_metadata_connection_config(os.path.join(root, "metadata.sqlite"))
  store = metadata_store.MetadataStore(config)
  executions = store.get_executions()
  assert not [e for e in executions if e.last_known_state in (mlmd.Execution.RUNNING,
                                                              mlmd.Execution.NEW)]
  killed_id = int(partial[0])
  [abandoned] = store.get_executions_by_id([killed_id])
  assert abandoned.last_known_state == mlmd.Execution.CANCELED
  assert "abandoned" in abandoned.custom_properties
  assert not os.path.exists(os.path.join(root, "RetrievalTrainer", "model", partial[0]))
  for artifact in store.get_artifacts():
    if artifact.state == mlmd.Artifact.LIVE:
      assert os.path.exists(artifact.uri), artifact.uri
  for model in store.get_artifacts_by_type("Model"):  # never an empty model directory
    assert model.state == mlmd.Artifact.LIVE
    assert os.listdir(os.path.join(model.uri, "Format-Serving")), model.uri
  # The resumed trainer read the first run's Transform outputs: reused, not recomputed.
  transform = {e.artifact_id for e in store.get_events_by_execution_ids(
      [c["execution_id"] for c in first["components"] if c["component"] == "Transform"])
               if e.type == mlmd.Event.OUTPUT}
  [trainer] = [c["execution_id"] for c in second["components"]
               if c["component"] == "RetrievalTrainer"]
  inputs = {e.artifact_id for e in store.get_events_by_execution_ids([trainer])
            if e.type == mlmd.Event.INPUT}
  assert transform & inputs
  assert all(e.execution_id != killed_id for e in store.get_events_by_artifact_ids(
      sorted(inputs)) if e.type == mlmd.Event.OUTPUT)
  assert cli.main(["metadata", "models", "--pipeline-root", root, "--json"]) == 0
  models = json.loads(capsys.readouterr().out)
  assert len(models) == 1 and models[0]["run_id"] == second["run_id"]
