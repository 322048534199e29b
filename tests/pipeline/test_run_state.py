"""Interrupted runs, without running a pipeline: one run per pipeline root, what a killed
run leaves (RUNNING executions, half-written outputs) marked abandoned and removed, runs
shown as ABANDONED rather than RUNNING, and what the cache key covers."""
import logging
import io
import os
import subprocess
import sys

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd
from tfx.orchestration import metadata as tfx_metadata

from recsys_tfx.pipeline import metadata, progress, run_state
from test_metadata import Recorder, recsys_json


def test_one_run_per_pipeline_root(tmp_path):
  root = str(tmp_path / "pipeline")
  assert not run_state.run_in_progress(root)
  with run_state.run_lock(root):
    assert run_state.run_in_progress(root)
    with pytest.raises(run_state.RunInProgress, match=f"{root} is in use by another"):
      with run_state.run_lock(root, wait_seconds=0.2):
        pass
  assert not run_state.run_in_progress(root)
  with run_state.run_lock(root):  # free again
    pass


def test_the_lock_of_a_killed_run_is_released(tmp_path):
  root = str(tmp_path / "pipeline")
  code = ("import sys, os; from recsys_tfx.pipeline import run_state\n"
          "with run_state.run_lock(sys.argv[1]):\n"
          "  print('locked', flush=True); os.kill(os.getpid(), 9)")
  result = subprocess.run([sys.executable, "-c", code, root], capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == -9 and "locked" in result.stdout
  assert not run_state.run_in_progress(root)


@pytest.fixture
def killed_run(tmp_path):
  """A store as a run killed in RetrievalTrainer leaves it: upstream COMPLETE, the
  trainer RUNNING with its output directory on disk but not in MLMD, and one earlier
  output registered but not yet published."""
  root = tmp_path / "pipeline"
  path = str(root / "metadata.sqlite")
  os.makedirs(root)
  store = metadata_store.MetadataStore(tfx_metadata.sqlite_metadata_connection_config(path))
  r = Recorder(store)
  schema = r.run("run-1", "ImportSchemaGen", outputs={"schema": ("Schema", {})})["schema"]
  r.run("run-1", "Transform", {"schema": schema}, {"transform_graph": ("TransformGraph", {})})
  pending = r.run("run-1", "RetrievalTrainer", {"schema": schema},
                  {"model": ("Model", {})}, state=mlmd.Execution.RUNNING)["model"]
  [trainer] = [e for e in store.get_executions()
               if e.last_known_state == mlmd.Execution.RUNNING]
  partial = root / "RetrievalTrainer" / "model" / str(trainer.id)
  scratch = root / "RetrievalTrainer" / ".system" / "executor_execution" / str(trainer.id)
  for directory in (partial, scratch):
    os.makedirs(directory)
  return {"root": str(root), "path": path, "store": store, "recorder": r, "trainer": trainer.id,
          "model": pending, "partial": partial, "scratch": scratch, "schema": schema}


def test_a_killed_run_shows_as_abandoned_not_running(killed_run, capsys):
  runs = recsys_json(capsys, "metadata", "runs", "--pipeline-root", killed_run["root"])
  assert [r["status"] for r in runs] == ["ABANDONED"]
  assert {c["component"]: c["state"] for c in runs[0]["components"]}["RetrievalTrainer"] \
      == "ABANDONED"
  with run_state.run_lock(killed_run["root"]):  # while a run holds the root: RUNNING
    runs = recsys_json(capsys, "metadata", "runs", "--pipeline-root", killed_run["root"])
    assert [r["status"] for r in runs] == ["RUNNING"]


def test_abandoned_executions_are_marked_and_their_partial_outputs_removed(killed_run,
                                                                           capsys):
  marked = run_state.abandon_unfinished(killed_run["path"], killed_run["root"])
  assert marked == [f"RetrievalTrainer (execution {killed_run['trainer']}, run run-1)"]
  store = killed_run["store"]
  [trainer] = store.get_executions_by_id([killed_run["trainer"]])
  assert trainer.last_known_state == mlmd.Execution.CANCELED
  assert "before it finished" in trainer.custom_properties["abandoned"].string_value
  [model] = store.get_artifacts_by_id([killed_run["model"]])
  assert model.state == mlmd.Artifact.ABANDONED
  [schema] = store.get_artifacts_by_id([killed_run["schema"]])
  assert schema.state == mlmd.Artifact.LIVE  # finished outputs stay
  assert not killed_run["partial"].exists() and not killed_run["scratch"].exists()
  with run_state.run_lock(killed_run["root"]):  # even while the next run goes on
    runs = recsys_json(capsys, "metadata", "runs", "--pipeline-root", killed_run["root"])
  assert runs[0]["status"] == "ABANDONED"
  assert run_state.abandon_unfinished(killed_run["path"], killed_run["root"]) == []


def test_an_older_run_left_running_is_abandoned_even_while_a_newer_one_runs(killed_run,
                                                                             capsys):
  r = killed_run["recorder"]
  r.run("run-2", "ImportSchemaGen", outputs={"schema": ("Schema", {})},
        state=mlmd.Execution.CACHED)
  r.run("run-2", "Transform", state=mlmd.Execution.RUNNING)
  with run_state.run_lock(killed_run["root"]):
    runs = recsys_json(capsys, "metadata", "runs", "--pipeline-root", killed_run["root"])
  assert [(r["run_id"], r["status"]) for r in runs] == [("run-1", "ABANDONED"),
                                                        ("run-2", "RUNNING")]


def test_cached_components_say_so_in_the_progress_lines():
  stream = io.StringIO()
  handler = progress._StageLines(stream)
  for message in ("Component Transform is running.", "A cached execution 7 is used.",
                  "Component Transform is finished.", "Component RetrievalTrainer is running.",
                  "Component RetrievalTrainer is finished."):
    handler.emit(logging.LogRecord("absl", logging.INFO, "", 0, message, (), None))
  lines = stream.getvalue().splitlines()
  assert "<- Transform reused its earlier output (cached)" in lines[1]
  assert "<- RetrievalTrainer finished" in lines[3]


def test_cache_key_inputs_code_version_and_pinned_schema(tmp_path):
  version = run_state.code_version()
  assert len(version) == 16 and version == run_state.code_version()
  schema = tmp_path / "schema.pbtxt"
  schema.write_text('feature { name: "user_id" type: BYTES }\n')
  first = run_state.pinned_schema(str(schema), str(tmp_path / "data"))
  assert first == run_state.pinned_schema(str(schema), str(tmp_path / "data"))
  assert open(first).read() == schema.read_text()
  schema.write_text('feature { name: "item_id" type: BYTES }\n')  # an edited schema
  second = run_state.pinned_schema(str(schema), str(tmp_path / "data"))
  assert second != first and os.path.basename(second) == "schema.pbtxt"
