"""`recsys metadata`: runs, models, lineage and artifacts read back from ML Metadata.

Fast tests use a store written here with MLMD's own API (three runs, blessings, pushes);
the e2e tests read the store of a real pipeline run."""
import json
import os

import pytest
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd
from tfx.orchestration import metadata as tfx_metadata

from recsys_tfx import cli
from recsys_tfx.pipeline import metadata

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recsys(*argv) -> int:
  """The `recsys` command, in-process."""
  return cli.main(list(argv))


def recsys_json(capsys, *argv):
  assert recsys(*argv, "--json") == 0
  return json.loads(capsys.readouterr().out)


class Recorder:
  """Writes executions the way TFX's orchestrators do: attributed to pipeline, run and
  node contexts, linked to artifacts by INPUT/OUTPUT events keyed by input/output name."""

  def __init__(self, store, pipeline="recsys-demo", kfp=False):
    """kfp: as KFP v2's launcher records them instead (system.* contexts, the component
    as the execution's task_name, "tfx."-prefixed artifact types, an execution per DAG)."""
    self.store, self.pipeline, self.contexts, self.kfp = store, pipeline, {}, kfp
    self.types = (("system.Pipeline", "system.PipelineRun", "system.ContainerExecution")
                  if kfp else ("pipeline", "pipeline_run", "Component"))
    for name in self.types[:2] + ("node",):
      store.put_context_type(mlmd.ContextType(name=name))
    for name in (self.types[2], "system.DAGExecution"):
      store.put_execution_type(mlmd.ExecutionType(name=name))
    self.context(self.types[0], pipeline)
    self._dags = set()

  def context(self, type_name, name):
    if (type_name, name) not in self.contexts:
      type_id = self.store.get_context_type(type_name).id
      [cid] = self.store.put_contexts([mlmd.Context(type_id=type_id, name=name)])
      self.contexts[(type_name, name)] = self.store.get_contexts_by_id([cid])[0]
    return self.contexts[(type_name, name)]

  def run(self, run_id, node, inputs=None, outputs=None, state=mlmd.Execution.COMPLETE,
          **properties):
    """inputs: {key: artifact id}; outputs: {key: (type, {custom property: value})}.
    Returns {output key: artifact id}."""
    execution = mlmd.Execution(type_id=self.store.get_execution_type(self.types[2]).id,
                               last_known_state=state)
    if self.kfp:
      properties = {**properties, "task_name": node}
    for k, v in properties.items():
      _set(execution.custom_properties[k], v)
    pairs = []
    for key, artifact_id in (inputs or {}).items():
      [artifact] = self.store.get_artifacts_by_id([artifact_id])
      pairs.append((artifact, _event(mlmd.Event.INPUT, key)))
    for key, (type_name, props) in (outputs or {}).items():
      type_id = self.store.put_artifact_type(mlmd.ArtifactType(
          name=f"tfx.{type_name}" if self.kfp else type_name))
      artifact = mlmd.Artifact(type_id=type_id, uri=f"/root/{node}/{key}/{run_id}",
                               state=mlmd.Artifact.LIVE)
      for k, v in props.items():
        _set(artifact.custom_properties[k], v)
      pairs.append((artifact, _event(mlmd.Event.OUTPUT, key)))
    contexts = [self.context(self.types[0], self.pipeline), self.context(self.types[1], run_id)]
    if self.kfp and (self.types[1], run_id) not in self._dags:
      self._dags.add((self.types[1], run_id))
      dag = mlmd.Execution(type_id=self.store.get_execution_type("system.DAGExecution").id,
                           last_known_state=mlmd.Execution.RUNNING)
      self.store.put_execution(dag, [], contexts)
    if not self.kfp:
      contexts.append(self.context("node", f"{self.pipeline}.{node}"))
    _, artifact_ids, _ = self.store.put_execution(execution, pairs, contexts)
    keys = list(inputs or {}) + list(outputs or {})
    return dict(zip(keys, artifact_ids))


def _set(value, python_value):
  if isinstance(python_value, float):
    value.double_value = python_value
  elif isinstance(python_value, int):
    value.int_value = python_value
  else:
    value.string_value = python_value


def _event(event_type, key):
  event = mlmd.Event(type=event_type)
  event.path.steps.add().key = key
  event.path.steps.add().index = 0
  return event


@pytest.fixture(scope="module", params=["tfx", "kfp"])
def store_path(request, tmp_path_factory):
  """As LocalDagRunner records runs ("tfx") and as KFP v2 on Kubeflow does ("kfp").
  Run 1: a blessed, pushed retrieval model A. Run 2: retrieval model B (not blessed,
  not pushed; RankingEvalExamples only uses it for candidates) and ranking model C
  (blessed by the RankingGate, pushed).
  Run 3: retrieval model D pushed as a newer version, then an evaluator that FAILED."""
  path = str(tmp_path_factory.mktemp("mlmd") / "metadata.sqlite")
  r = Recorder(metadata_store.MetadataStore(
      tfx_metadata.sqlite_metadata_connection_config(path)), kfp=request.param == "kfp")
  schema = r.run("run-1", "ImportSchemaGen", outputs={"schema": ("Schema", {})},
                 schema_file="/repo/schema/synthetic/schema.pbtxt")["schema"]
  examples = r.run("run-1", "TimeSplitExampleGen",
                   outputs={"examples": ("Examples", {"span": 0})},
                   input_base="/data/synthetic", input_fingerprint="num_files:1")["examples"]
  transform = r.run("run-1", "Transform", {"examples": examples, "schema": schema},
                    {"transform_graph": ("TransformGraph", {}),
                     "transformed_examples": ("Examples", {})})
  trainer_inputs = {"examples": transform["transformed_examples"], "schema": schema,
                    "transform_graph": transform["transform_graph"]}
  a = r.run("run-1", "RetrievalTrainer", trainer_inputs, {"model": ("Model", {})})["model"]
  r.run("run-1", "RetrievalEvaluator", {"examples": examples, "model": a},
        {"evaluation": ("ModelEvaluation", {"model/hit_rate@10": 0.2, "tfx_version": "1.16"})})
  r.run("run-1", "RetrievalValidator", {"model": a},
        {"blessing": ("ModelBlessing", {"blessed": 1}), "evaluation": ("ModelEvaluation", {})})
  r.run("run-1", "RetrievalPusher", {"model": a}, {"pushed_model": ("PushedModel", {
      "pushed": 1, "pushed_version": "100", "pushed_destination": "/serving/retrieval/100"})})

  r.run("run-2", "ImportSchemaGen", outputs={"schema": ("Schema", {})},
        state=mlmd.Execution.CACHED)
  b = r.run("run-2", "RetrievalTrainer", trainer_inputs, {"model": ("Model", {})})["model"]
  r.run("run-2", "RetrievalValidator", {"model": b, "baseline_model": a},
        {"blessing": ("ModelBlessing", {"blessed": 0})})
  r.run("run-2", "RetrievalPusher", {"model": b}, {"pushed_model": ("PushedModel", {
      "pushed": 0})})
  c = r.run("run-2", "RankingTrainer", trainer_inputs, {"model": ("Model", {})})["model"]
  r.run("run-2", "RankingEvalExamples", {"retrieval_model": b},
        {"ranking_examples": ("Examples", {})})
  r.run("run-2", "RankingGate", {"model": c},
        {"blessing": ("ModelBlessing", {"blessed": 1, "reasons": "[]"}),
         "evaluation": ("ModelEvaluation", {"lists/ranker/ndcg@10": 0.1})})
  r.run("run-2", "RankingPusher", {"model": c}, {"pushed_model": ("PushedModel", {
      "pushed": 1, "pushed_version": "200", "pushed_destination": "/serving/ranking/200"})})

  d = r.run("run-3", "RetrievalTrainer", trainer_inputs, {"model": ("Model", {})})["model"]
  r.run("run-3", "RetrievalPusher", {"model": d}, {"pushed_model": ("PushedModel", {
      "pushed": 1, "pushed_version": "300", "pushed_destination": "/serving/retrieval/300"})})
  r.run("run-3", "RetrievalEvaluator", {"model": d}, state=mlmd.Execution.FAILED)
  return path, {"A": a, "B": b, "C": c, "D": d, "schema": schema, "examples": examples,
                "graph": transform["transform_graph"]}


def test_runs_status_and_components(store_path, capsys):
  path, _ = store_path
  runs = recsys_json(capsys, "metadata", "runs", "--metadata", path)
  assert [(r["run_id"], r["status"]) for r in runs] == [
      ("run-1", "COMPLETE"), ("run-2", "COMPLETE"), ("run-3", "FAILED")]
  assert runs[1]["cached"] == ["ImportSchemaGen"]
  assert "Transform" in runs[1]["not_run"] and "RankingTrainer" not in runs[1]["not_run"]
  assert {c["component"]: c["state"] for c in runs[2]["components"]} == {
      "RetrievalTrainer": "COMPLETE", "RetrievalPusher": "COMPLETE",
      "RetrievalEvaluator": "FAILED"}


def test_models_blessing_metrics_push_and_live(store_path, capsys):
  path, ids = store_path
  models = {m["id"]: m for m in recsys_json(capsys, "metadata", "models", "--metadata", path)}
  a, b, c, d = (models[ids[k]] for k in "ABCD")
  assert (a["blessed"], b["blessed"], c["blessed"], d["blessed"]) == (True, False, True, None)
  assert a["metrics"] == {"model/hit_rate@10": 0.2}
  assert b["metrics"] == {}  # the gate scored C; B only supplied candidates
  assert c["metrics"] == {"lists/ranker/ndcg@10": 0.1}
  assert (a["pushed"], b["pushed"], c["pushed"], d["pushed"]) == (True, False, True, True)
  assert (a["live"], c["live"], d["live"]) == (False, True, True)  # D is newer than A
  assert (c["model_name"], c["pushed_version"]) == ("ranking", "200")
  assert (a["trainer"], a["run_id"], c["trainer"]) == ("RetrievalTrainer", "run-1",
                                                       "RankingTrainer")

  assert recsys("metadata", "models", "--metadata", path) == 0
  table = capsys.readouterr().out
  row = next(line for line in table.splitlines() if line.startswith(f"{ids['C']} "))
  assert "yes" in row and "ranking/200" in row and "LIVE" in row
  assert "model/hit_rate@10" in table
  assert "live stages:" in table and f"retrieval    model {ids['D']}" in table
  assert f"ranking      model {ids['C']}" in table


def test_lineage_walks_back_to_data_schema_and_transform(store_path, capsys):
  path, ids = store_path
  lineage = recsys_json(capsys, "metadata", "lineage", str(ids["A"]), "--metadata", path)
  assert [d["id"] for d in lineage["data"]] == [ids["examples"]]
  assert lineage["data"][0]["span"] == 0
  assert lineage["data"][0]["input_base"] == "/data/synthetic"
  assert [s["id"] for s in lineage["schema"]] == [ids["schema"]]
  assert [t["id"] for t in lineage["transform_graph"]] == [ids["graph"]]
  assert [e["producer"] for e in lineage["evaluations"]] == ["RetrievalEvaluator",
                                                             "RetrievalValidator"]
  assert lineage["blessings"][0]["properties"]["blessed"] == 1
  assert lineage["pushes"][0]["destination"] == "/serving/retrieval/100"
  assert [s["component"] for s in lineage["steps"]] == [
      "RetrievalTrainer", "Transform", "ImportSchemaGen", "TimeSplitExampleGen"]
  assert recsys("metadata", "lineage", str(ids["A"]), "--metadata", path) == 0
  assert "span 0 from /data/synthetic" in capsys.readouterr().out


def test_artifacts_by_type(store_path, capsys):
  path, ids = store_path
  found = recsys_json(capsys, "metadata", "artifacts", "--type", "Model", "--metadata", path)
  assert [a["id"] for a in found] == [ids[k] for k in "ABCD"]
  assert [a["run_id"] for a in found] == ["run-1", "run-2", "run-2", "run-3"]


def _fails(capsys, *argv) -> str:
  assert recsys(*argv) == 2
  captured = capsys.readouterr()
  assert captured.out == "" and len(captured.err.strip().splitlines()) == 1, captured.err
  return captured.err


def test_bad_input_is_one_line_and_writes_nothing(store_path, capsys, tmp_path):
  path, ids = store_path
  missing = tmp_path / "nowhere" / "metadata.sqlite"
  assert "no ML Metadata store at" in _fails(capsys, "metadata", "runs", "--metadata",
                                             str(missing))
  assert "no ML Metadata store at" in _fails(capsys, "metadata", "models", "--pipeline-root",
                                             str(tmp_path / "nowhere"))
  assert not (tmp_path / "nowhere").exists()
  assert "no Model artifact with id 999" in _fails(capsys, "metadata", "lineage", "999",
                                                   "--metadata", path)
  assert "no Model artifact with id" in _fails(capsys, "metadata", "lineage",
                                               str(ids["schema"]), "--metadata", path)
  assert "types present: " in _fails(capsys, "metadata", "artifacts", "--type", "Modle",
                                     "--metadata", path)
  assert "MySQL config file" in _fails(capsys, "metadata", "runs", "--mysql-config",
                                       str(tmp_path / "mysql.yaml"))
  config = tmp_path / "bad.yaml"
  config.write_text("host: 127.0.0.1\nport: 1\ndatabase: mlmd\nuser: u\npasword: x\n")
  assert "unknown key(s) ['pasword']" in _fails(capsys, "metadata", "runs", "--mysql-config",
                                                str(config))


def test_reading_does_not_change_the_store(store_path, capsys):
  path, _ = store_path
  before = os.stat(path).st_mtime_ns, os.path.getsize(path)
  recsys_json(capsys, "metadata", "models", "--metadata", path)
  assert (os.stat(path).st_mtime_ns, os.path.getsize(path)) == before


# --- the store of a real pipeline run -------------------------------------------------


@pytest.fixture(scope="module")
def real_run(small_pipeline_run):
  return small_pipeline_run


def _local_nodes(config):
  """Node ids of the pipeline that ran (a Resolver records an execution too)."""
  from recsys_tfx.pipeline.pipeline import create_pipeline
  pipeline = create_pipeline(config, config.data_dir, config.schema_file("synthetic"))
  return {n.id for n in pipeline.components}


@pytest.mark.e2e
def test_real_run_is_listed_with_every_component(real_run, capsys):
  config, _ = real_run
  runs = recsys_json(capsys, "metadata", "runs", "--pipeline-root", config.pipeline_root)
  assert len(runs) == 1 and runs[0]["status"] == "COMPLETE"
  assert runs[0]["pipeline"] == config.pipeline_name
  ran = {c["component"] for c in runs[0]["components"]}
  assert ran == _local_nodes(config)
  assert all(c["state"] == "COMPLETE" for c in runs[0]["components"])


@pytest.mark.e2e
def test_real_models_with_metrics_push_and_live(real_run, capsys):
  config, result = real_run
  models = {m["trainer"]: m for m in recsys_json(capsys, "metadata", "models", "--metadata",
                                                  config.metadata_path)}
  retrieval = models["RetrievalTrainer"]
  for key in ("model/hit_rate@10", "model/ndcg@10", "popularity/hit_rate@10"):
    assert retrieval["metrics"][key] == pytest.approx(result["metrics"][key], abs=1e-6)
  assert retrieval["pushed"] and retrieval["live"]
  assert os.path.realpath(retrieval["pushed_destination"]) == \
      os.path.realpath(result["pushed_model"])
  assert retrieval["model_name"] == "retrieval"
  blessings = [a for a in recsys_json(capsys, "metadata", "artifacts", "--type",
                                      "ModelBlessing", "--metadata", config.metadata_path)] \
      if _has_type(config, "ModelBlessing") else []
  if blessings:  # the TFMA validator ran: its verdict, not "n/a"
    assert retrieval["blessed"] == (blessings[0]["properties"]["blessed"] == 1)
  else:
    assert retrieval["blessed"] is None
  if config.ranking.enabled:
    ranking = models["RankingTrainer"]
    assert ranking["metrics"] and all(k.startswith(("lists/", "rerank_lift"))
                                      for k in ranking["metrics"])
    assert ranking["pushed"] == ranking["live"] == bool(ranking["blessed"])
    assert not ranking["pushed"] or ranking["model_name"] == "ranking"


def _has_type(config, type_name) -> bool:
  store = metadata.connect_sqlite(config.metadata_path)
  return bool(store.get_artifacts_by_type(type_name))


@pytest.mark.e2e
def test_real_lineage_of_the_pushed_model(real_run, capsys):
  config, _ = real_run
  models = recsys_json(capsys, "metadata", "models", "--metadata", config.metadata_path)
  model_id = next(m["id"] for m in models if m["trainer"] == "RetrievalTrainer")
  lineage = recsys_json(capsys, "metadata", "lineage", str(model_id), "--metadata",
                        config.metadata_path)
  [data] = lineage["data"]
  assert data["producer"] == "TimeSplitExampleGen" and data["span"] == 0
  assert os.path.realpath(data["input_base"]) == os.path.realpath(
      os.path.join(config.data_dir, "synthetic"))
  assert [s["producer"] for s in lineage["schema"]] == ["ImportSchemaGen"]
  assert [t["producer"] for t in lineage["transform_graph"]] == ["Transform"]
  assert "RetrievalEvaluator" in {e["producer"] for e in lineage["evaluations"]}
  steps = [s["component"] for s in lineage["steps"]]
  assert steps[0] == "RetrievalTrainer"
  assert {"Transform", "TimeSplitExampleGen", "ImportSchemaGen"} <= set(steps)
  assert recsys("metadata", "lineage", str(model_id), "--metadata", config.metadata_path) == 0
  out = capsys.readouterr().out
  assert "transform graph: TransformGraph" in out and "evaluation:" in out


def test_stages_say_why_the_ranking_stage_is_off():
  row = lambda id, trainer, live, reasons=(): {
      "id": id, "trainer": trainer, "run_id": "r", "live": live, "model_name": "retrieval",
      "pushed_version": "9", "reasons": list(reasons)}
  stages = metadata.stages([row(1, "RetrievalTrainer", True),
                            row(2, "RankingTrainer", False, ["lift -0.0100, required > 0"])])
  assert stages["retrieval"] == "model 1 (run r), retrieval/9"
  assert stages["ranking"] == ("none live, so the funnel serves the retrieval order: the "
                               "latest, model 2, lift -0.0100, required > 0")
  assert metadata.stages([])["ranking"] == "none trained"
