"""What ML Metadata knows about the pipeline: runs, models, lineage, artifacts.

The store is read once into a Snapshot (executions, artifacts, events, and which run
and pipeline node each execution belongs to); every question is then answered from it
in plain Python. TFX's orchestrators record a run as a `pipeline_run` context and a
component as a `node` context named "<pipeline>.<node id>", and link artifacts to
executions by INPUT/OUTPUT events whose first path step is the input/output key.

Works on the SQLite store of a local run (opened read-only) and on MySQL (Kubeflow's
metadata store) through a connection config.
"""
import collections
import dataclasses
import datetime
import json
import os
from typing import Any, Dict, List, Optional, Tuple

import yaml
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as mlmd

from recsys_tfx.schema import export_contract as contract

Event, Execution = mlmd.Event, mlmd.Execution
INPUTS = (Event.INPUT, Event.DECLARED_INPUT)
OUTPUTS = (Event.OUTPUT, Event.DECLARED_OUTPUT)
# The input keys under which an execution judges a model: TFX Evaluator's, the
# RankingGate's and the Pusher's "model" (RankingEvalExamples' "retrieval_model" only
# supplies candidates, and a "baseline_model" is the one compared against).
EVALUATED_KEYS = ("model",)
MYSQL_KEYS = ("host", "port", "database", "user", "password")


class MetadataError(ValueError):
  pass


def connect_sqlite(path: str) -> metadata_store.MetadataStore:
  if not os.path.isfile(path):
    raise MetadataError(f"no ML Metadata store at {path}: run the pipeline first "
                        f"(`recsys run`), or pass --metadata / --pipeline-root")
  config = mlmd.ConnectionConfig()
  config.sqlite.filename_uri = path
  config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READONLY
  return _open(config, path)


def read_mysql_config(path: str) -> Dict[str, Any]:
  if not os.path.isfile(path):
    raise MetadataError(f"MySQL config file {path} does not exist")
  with open(path) as f:
    values = yaml.safe_load(f) or {}  # YAML or JSON
  if not isinstance(values, dict):
    raise MetadataError(f"{path}: expected a mapping with keys {list(MYSQL_KEYS)}")
  unknown = sorted(set(values) - set(MYSQL_KEYS))
  missing = [k for k in ("host", "database", "user") if not values.get(k)]
  if unknown or missing:
    raise MetadataError(f"{path}: unknown key(s) {unknown}, missing {missing}; "
                        f"expected {list(MYSQL_KEYS)} (port and password optional)")
  return values


def mysql_connection_config(values: Dict[str, Any]) -> mlmd.ConnectionConfig:
  config = mlmd.ConnectionConfig()
  config.mysql.host = str(values["host"])
  config.mysql.port = int(values.get("port") or 3306)
  config.mysql.database = str(values["database"])
  config.mysql.user = str(values["user"])
  config.mysql.password = str(values.get("password") or "")
  config.mysql.skip_db_creation = True  # a reader must not create a missing database
  return config


def connect_mysql(values: Dict[str, Any]) -> metadata_store.MetadataStore:
  where = f"mysql://{values['user']}@{values['host']}:{values.get('port') or 3306}/" \
          f"{values['database']}"
  return _open(mysql_connection_config(values), where,
               hint=" (is a MySQL server listening there, and do the credentials work?)")


def _open(config: mlmd.ConnectionConfig, where: str,
          hint: str = "") -> metadata_store.MetadataStore:
  try:
    return metadata_store.MetadataStore(config)
  except Exception as e:  # MLMD raises RuntimeError or its own errors, often multi-line
    message = " ".join(str(e).split())[:300]
    raise MetadataError(f"cannot open ML Metadata at {where}: {message}{hint}") from None


def iso(ms: int) -> str:
  return datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc).strftime(
      "%Y-%m-%dT%H:%M:%SZ") if ms else ""


def _prop(message, name: str) -> Any:
  """A property or custom property value, whatever its type."""
  for props in (message.properties, message.custom_properties):
    if name in props:
      value = props[name]
      kind = value.WhichOneof("value")
      return getattr(value, kind) if kind else None
  return None


@dataclasses.dataclass
class Snapshot:
  executions: Dict[int, Execution]
  artifacts: Dict[int, mlmd.Artifact]
  types: Dict[int, str]  # artifact -> type name without KFP's "tfx." prefix
  inputs: Dict[int, List[Tuple[str, int]]]  # execution -> [(key, artifact)]
  outputs: Dict[int, List[Tuple[str, int]]]
  producer: Dict[int, int]  # artifact -> execution
  consumers: Dict[int, List[Tuple[str, int]]]  # artifact -> [(key, execution)]
  node: Dict[int, str]  # execution -> pipeline node id
  run: Dict[int, str]  # execution -> run id
  pipeline: Dict[int, str]  # execution -> pipeline name
  runs: Dict[str, Tuple[str, int]]  # run id -> (pipeline name, create time)

  def artifact_type(self, artifact_id: int) -> str:
    return self.types[artifact_id]

  def of_type(self, type_name: str) -> List[int]:
    return sorted(a for a, t in self.types.items() if t == type_name)

  def producer_node(self, artifact_id: int) -> str:
    execution = self.producer.get(artifact_id)
    return self.node.get(execution, "") if execution is not None else ""


# Context types of TFX's own orchestrators (LocalDagRunner) and of KFP v2's launcher
# (kubeflow/pipelines backend/src/v2/metadata/client.go: "system.Pipeline",
# "system.PipelineRun"; there a component is the execution's "task_name" property, artifact
# types are schema titles such as "tfx.Model", and each DAG has an execution of its own).
PIPELINE_CONTEXTS = ("pipeline", "system.Pipeline")
RUN_CONTEXTS = ("pipeline_run", "system.PipelineRun")
DAG_EXECUTIONS = ("system.DAGExecution",)


def snapshot(store: metadata_store.MetadataStore) -> Snapshot:
  executions = {e.id: e for e in store.get_executions() if e.type not in DAG_EXECUTIONS}
  artifacts = {a.id: a for a in store.get_artifacts()}
  types = {a.id: a.type[len("tfx."):] if a.type.startswith("tfx.") else a.type
           for a in artifacts.values()}
  inputs, outputs = collections.defaultdict(list), collections.defaultdict(list)
  producer, consumers = {}, collections.defaultdict(list)
  for event in store.get_events_by_execution_ids(list(executions)):
    key = event.path.steps[0].key if event.path.steps else ""
    if event.type in INPUTS:
      inputs[event.execution_id].append((key, event.artifact_id))
      consumers[event.artifact_id].append((key, event.execution_id))
    elif event.type in OUTPUTS:
      outputs[event.execution_id].append((key, event.artifact_id))
      producer[event.artifact_id] = event.execution_id
  node = {e.id: _prop(e, "task_name") for e in executions.values() if _prop(e, "task_name")}
  run, pipeline = {}, {}
  for context in store.get_contexts():
    attribution = (pipeline if context.type in PIPELINE_CONTEXTS else
                   run if context.type in RUN_CONTEXTS else
                   node if context.type == "node" else None)
    if attribution is None:
      continue
    for execution in store.get_executions_by_context(context.id):
      if execution.id in executions:
        attribution[execution.id] = context.name
  for execution_id, name in node.items():  # TFX: "<pipeline>.<node id>" -> node id
    prefix = pipeline.get(execution_id, "") + "."
    node[execution_id] = name[len(prefix):] if name.startswith(prefix) else name
  runs = {}
  for execution_id, run_id in run.items():
    created = executions[execution_id].create_time_since_epoch
    name = pipeline.get(execution_id, "")
    runs[run_id] = (name, min(created, runs.get(run_id, (name, created))[1]))
  return Snapshot(executions, artifacts, types, dict(inputs), dict(outputs), producer,
                  dict(consumers), node, run, pipeline, runs)


def state_name(execution: Execution) -> str:
  return Execution.State.Name(execution.last_known_state)


ABANDONED_PROPERTY = "abandoned"  # pipeline/run_state.py marks executions with it


def component_state(execution: Execution, run_abandoned: bool = False) -> str:
  """The execution's state, ABANDONED for one an interrupted run left unfinished."""
  state = state_name(execution)
  if _prop(execution, ABANDONED_PROPERTY) is not None or (
      run_abandoned and state in ("RUNNING", "NEW")):
    return "ABANDONED"
  return state


def runs(snap: Snapshot, in_progress: Optional[bool] = None) -> List[Dict[str, Any]]:
  """Each pipeline run, oldest first: when, status, each component's state.

  `in_progress` says whether a run is going on now (a local run holds its pipeline
  root's lock: pipeline/run_state.py); None when it cannot be known (a MySQL store).
  Executions still RUNNING in a run that is not the pipeline's latest, or in its latest
  when no run is in progress, belong to a run that was interrupted: ABANDONED."""
  by_run = collections.defaultdict(list)
  for execution_id, run_id in snap.run.items():
    by_run[run_id].append(snap.executions[execution_id])
  known_nodes = collections.defaultdict(set)  # pipeline -> every node seen in any run
  for execution_id, name in snap.pipeline.items():
    if execution_id in snap.node:
      known_nodes[name].add(snap.node[execution_id])
  spans = run_spans(snap)
  ordered = sorted(snap.runs.items(), key=_run_order)
  latest = {pipeline_name: run_id for run_id, (pipeline_name, _) in ordered}
  result = []
  for run_id, (pipeline_name, _) in ordered:
    executions = sorted(by_run[run_id], key=lambda e: e.create_time_since_epoch)
    abandoned = latest.get(pipeline_name) != run_id or in_progress is False
    components = [{"component": snap.node.get(e.id, ""),
                   "state": component_state(e, abandoned),
                   "execution_id": e.id, "started": iso(e.create_time_since_epoch),
                   "finished": iso(e.last_update_time_since_epoch)} for e in executions]
    ran = {c["component"] for c in components}
    result.append({
        "run_id": run_id, "pipeline": pipeline_name, "spans": spans.get(run_id, ""),
        "status": _run_status([c["state"] for c in components]),
        "started": iso(min(e.create_time_since_epoch for e in executions)),
        "finished": iso(max(e.last_update_time_since_epoch for e in executions)),
        "components": components,
        "cached": [c["component"] for c in components if c["state"] == "CACHED"],
        "not_run": sorted(known_nodes[pipeline_name] - ran),
    })
  return result


def _run_order(item) -> Tuple[int, str]:
  run_id, (_, created) = item
  return created, run_id


def _run_status(states: List[str]) -> str:
  for status in ("FAILED", "ABANDONED", "CANCELED", "RUNNING", "NEW"):
    if status in states:
      return status
  return "COMPLETE"


def _outputs_of_consumers(snap: Snapshot, artifact_id: int, type_name: str,
                          keys=EVALUATED_KEYS) -> List[int]:
  """Artifacts of a type written by executions that consumed `artifact_id` under `keys`."""
  found = []
  for key, execution_id in snap.consumers.get(artifact_id, []):
    if key in keys:
      found += [a for _, a in snap.outputs.get(execution_id, [])
                if snap.artifact_type(a) == type_name]
  return sorted(set(found))


def metrics_of(artifact: mlmd.Artifact) -> Dict[str, float]:
  """An evaluation's metrics: its float custom properties (RetrievalEvaluator and
  RankingGate record their headline figures there)."""
  return {k: v.double_value for k, v in sorted(artifact.custom_properties.items())
          if v.WhichOneof("value") == "double_value"}


def _push(snap: Snapshot, artifact_id: int) -> Dict[str, Any]:
  pushed = snap.artifacts[artifact_id]
  destination = _prop(pushed, "pushed_destination") or ""
  return {"id": artifact_id, "pushed": _prop(pushed, "pushed") == 1,
          "destination": destination, "version": _prop(pushed, "pushed_version") or "",
          # TF Serving layout <serving_dir>/<model name>/<version>
          "model_name": os.path.basename(os.path.dirname(destination.rstrip("/")))}


def live_pushes(snap: Snapshot) -> Dict[str, int]:
  """Model name -> the PushedModel TF Serving serves: the newest pushed version."""
  newest = {}
  for artifact_id in snap.of_type("PushedModel"):
    push = _push(snap, artifact_id)
    if not push["pushed"]:
      continue
    version = int(push["version"]) if str(push["version"]).isdigit() else -1
    key = (version, artifact_id)
    if push["model_name"] not in newest or key > newest[push["model_name"]][0]:
      newest[push["model_name"]] = (key, artifact_id)
  return {name: artifact_id for name, (_, artifact_id) in newest.items()}


def models(snap: Snapshot) -> List[Dict[str, Any]]:
  """Every trained model: run, blessing, metrics, push, and whether it is live."""
  live = set(live_pushes(snap).values())
  result = []
  for artifact_id in snap.of_type("Model"):
    artifact = snap.artifacts[artifact_id]
    blessings = _outputs_of_consumers(snap, artifact_id, "ModelBlessing", ("model",))
    evaluations = _outputs_of_consumers(snap, artifact_id, "ModelEvaluation")
    pushes = [_push(snap, p)
              for p in _outputs_of_consumers(snap, artifact_id, "PushedModel", ("model",))]
    done = [p for p in pushes if p["pushed"]]
    metrics, reasons = {}, []
    for evaluation in evaluations:
      metrics.update(metrics_of(snap.artifacts[evaluation]))
    # Why a model was not blessed: the RankingGate's blessing says; TFMA's verdict is put
    # in words by the BlessingReport that read the blessing.
    for blessing in blessings:
      reports = _outputs_of_consumers(snap, blessing, "ModelEvaluation", ("blessing",))
      for verdict in [blessing] + reports:
        reasons += json.loads(_prop(snap.artifacts[verdict], "reasons") or "[]")
    # The verdict is the blessing a pusher acted on (a ranker's TFMA blessing only reports;
    # the RankingGate's decides); without a pusher, every blessing counts.
    deciding = [b for b in blessings
                if any(key == "model_blessing" for key, _ in snap.consumers.get(b, []))]
    deciding = deciding or blessings
    execution = snap.producer.get(artifact_id)
    result.append({
        "id": artifact_id, "trainer": snap.producer_node(artifact_id),
        "run_id": snap.run.get(execution, ""), "created": iso(artifact.create_time_since_epoch),
        "uri": artifact.uri,
        "blessed": (all(_prop(snap.artifacts[b], "blessed") == 1 for b in deciding)
                    if deciding else None),
        "blessing_ids": blessings, "evaluation_ids": evaluations, "metrics": metrics,
        "pushed": bool(done), "pushed_version": done[-1]["version"] if done else "",
        "pushed_destination": done[-1]["destination"] if done else "",
        "model_name": done[-1]["model_name"] if done else "",
        "live": any(p["id"] in live for p in done),
        "reasons": list(dict.fromkeys(reasons)),
    })
  return result


def stages(result: List[Dict[str, Any]]) -> Dict[str, str]:
  """Which model serves each stage of the funnel (models() rows), and why the ranking
  stage is off when it is: no ranker was ever blessed, with the latest one's reasons."""
  out = {}
  for stage, trainer in (("retrieval", "RetrievalTrainer"), ("ranking", "RankingTrainer")):
    trained = [m for m in result if m["trainer"] == trainer]
    live = [m for m in trained if m["live"]]
    if live:
      m = live[-1]
      out[stage] = f"model {m['id']} (run {m['run_id']}), {m['model_name']}/{m['pushed_version']}"
    elif not trained:
      out[stage] = "none trained"
    else:
      latest = trained[-1]
      why = "; ".join(latest["reasons"]) or "not blessed"
      fallback = ", so the funnel serves the retrieval order" if stage == "ranking" else ""
      out[stage] = f"none live{fallback}: the latest, model {latest['id']}, {why}"
  return out


def recommender(snap: Snapshot) -> str:
  """The live recommender servable (the funnel in one graph) and what it composes."""
  artifact_id = live_pushes(snap).get(contract.RECOMMENDER_MODEL)
  if artifact_id is None:
    return "none composed"
  push, artifact = _push(snap, artifact_id), snap.artifacts[artifact_id]
  return (f"{push['model_name']}/{push['version']} (artifact {artifact_id}): retrieval "
          f"v{_prop(artifact, 'retrieval_version')}; {_prop(artifact, 'ranking')}")


def model_artifact(snap: Snapshot, model_id: int) -> mlmd.Artifact:
  artifact = snap.artifacts.get(model_id)
  if artifact is None or snap.artifact_type(model_id) != "Model":
    known = snap.of_type("Model")
    raise MetadataError(f"no Model artifact with id {model_id} in this store; "
                        f"Model ids: {known or 'none'} (see `recsys metadata models`)")
  return artifact


def describe_artifact(snap: Snapshot, artifact_id: int) -> Dict[str, Any]:
  artifact = snap.artifacts[artifact_id]
  execution = snap.producer.get(artifact_id)
  return {"id": artifact_id, "type": snap.artifact_type(artifact_id), "uri": artifact.uri,
          "producer": snap.producer_node(artifact_id), "execution_id": execution,
          "run_id": snap.run.get(execution, ""), "created": iso(artifact.create_time_since_epoch),
          "state": mlmd.Artifact.State.Name(artifact.state),
          "properties": {k: _prop(artifact, k) for k in
                         sorted(set(artifact.properties) | set(artifact.custom_properties))}}


def lineage(snap: Snapshot, model_id: int) -> Dict[str, Any]:
  """Walks MLMD backwards from the Model: the executions that led to it, each with its
  inputs, and a summary of the data span, schema and transform graph; then forward one
  step to the evaluations, blessings and pushes of the model."""
  model_artifact(snap, model_id)
  steps, seen, frontier = [], set(), [model_id]
  while frontier:
    artifact_id = frontier.pop(0)
    execution_id = snap.producer.get(artifact_id)
    if execution_id is None or execution_id in seen:
      continue
    seen.add(execution_id)
    execution = snap.executions[execution_id]
    inputs = sorted(snap.inputs.get(execution_id, []))
    steps.append({
        "component": snap.node.get(execution_id, ""), "execution_id": execution_id,
        "state": state_name(execution), "run_id": snap.run.get(execution_id, ""),
        "finished": iso(execution.last_update_time_since_epoch),
        "inputs": [{"key": k, **_brief(snap, a)} for k, a in inputs],
        "outputs": [{"key": k, **_brief(snap, a)}
                    for k, a in sorted(snap.outputs.get(execution_id, []))],
        "properties": {k: _prop(execution, k) for k in _EXECUTION_SUMMARY
                       if _prop(execution, k) is not None},
    })
    frontier += [a for _, a in inputs]
  upstream = {i["id"] for s in steps for i in s["inputs"]}
  return {
      "model": describe_artifact(snap, model_id),
      "data": [_data(snap, a) for a in sorted(upstream) if _is_raw_examples(snap, a)],
      "schema": [describe_artifact(snap, a) for a in sorted(upstream)
                 if snap.artifact_type(a) == "Schema"],
      "transform_graph": [describe_artifact(snap, a) for a in sorted(upstream)
                          if snap.artifact_type(a) == "TransformGraph"],
      "evaluations": [{**describe_artifact(snap, a), "metrics": metrics_of(snap.artifacts[a])}
                      for a in _outputs_of_consumers(snap, model_id, "ModelEvaluation")],
      "blessings": [describe_artifact(snap, a) for a in
                    _outputs_of_consumers(snap, model_id, "ModelBlessing", ("model",))],
      "pushes": [_push(snap, a) for a in
                 _outputs_of_consumers(snap, model_id, "PushedModel", ("model",))],
      "steps": steps,
  }


# What TimeSplitExampleGen records on its Examples when the input was dated spans
# (components/time_split_example_gen/executor.py; read here by name, not imported: MLMD
# readers need no TFX component code).
SPANS_PROPERTY, SPAN_PATHS_PROPERTY = "spans", "span_paths"


def run_spans(snap: Snapshot) -> Dict[str, str]:
  """Run id -> the spans ("3,4,5") of the Examples its ExampleGen wrote or reused."""
  out = {}
  for artifact_id in snap.of_type("Examples"):
    spans = _prop(snap.artifacts[artifact_id], SPANS_PROPERTY)
    if not spans or not _is_raw_examples(snap, artifact_id):
      continue
    for execution_id, run_id in snap.run.items():
      if any(a == artifact_id for _, a in snap.outputs.get(execution_id, [])):
        out[run_id] = spans
  return out


def pushed_spans(snap: Snapshot) -> Optional[Dict[str, Any]]:
  """The spans the newest pushed retrieval model was trained on: {"model", "span" (the
  newest), "spans", "span_paths"}; None when no model was pushed, or the newest pushed
  one was not trained on spans."""
  pushed = [m for m in models(snap) if m["pushed"] and m["trainer"] == "RetrievalTrainer"]
  if not pushed:
    return None
  newest = max(pushed, key=lambda m: m["id"])
  data = [d for d in lineage(snap, newest["id"])["data"] if d["spans"]]
  if not data:
    return None
  return {"model": newest, "span": max(d["span"] for d in data), "spans": data[-1]["spans"],
          "span_paths": data[-1]["span_paths"]}


# Execution properties worth showing in a lineage (where the data and schema came from).
_EXECUTION_SUMMARY = ("input_base", "input_fingerprint", "span", "version", "schema_file",
                      "run_fn", "preprocessing_fn")


def _brief(snap: Snapshot, artifact_id: int) -> Dict[str, Any]:
  return {"id": artifact_id, "type": snap.artifact_type(artifact_id),
          "uri": snap.artifacts[artifact_id].uri, "producer": snap.producer_node(artifact_id)}


def _is_raw_examples(snap: Snapshot, artifact_id: int) -> bool:
  """Examples written by an ExampleGen: their producer read files, not other Examples."""
  if snap.artifact_type(artifact_id) != "Examples":
    return False
  execution = snap.producer.get(artifact_id)
  return execution is not None and _prop(snap.executions[execution], "input_base") is not None


def _data(snap: Snapshot, artifact_id: int) -> Dict[str, Any]:
  described = describe_artifact(snap, artifact_id)
  execution = snap.executions[snap.producer[artifact_id]]
  artifact = snap.artifacts[artifact_id]
  return {**described, "span": _prop(artifact, "span"),
          "spans": _prop(artifact, SPANS_PROPERTY) or "",
          "span_paths": json.loads(_prop(artifact, SPAN_PATHS_PROPERTY) or "{}"),
          "version": _prop(artifact, "version"),
          "input_base": _prop(execution, "input_base"),
          "input_fingerprint": _prop(execution, "input_fingerprint")}


def artifacts(snap: Snapshot, type_name: str) -> List[Dict[str, Any]]:
  known = sorted(set(snap.types.values()))
  if type_name not in known:
    raise MetadataError(f"no artifacts of type '{type_name}' in this store; "
                        f"types present: {', '.join(known) or 'none'}")
  return [describe_artifact(snap, a) for a in snap.of_type(type_name)]
