"""Kubeflow: the compiled KFP v2 spec matches the local pipeline; the schedule requests as
they reach an HTTP server; bad input stops before anything is sent or written."""
import json
import os

import pytest
import yaml

from fake_kfp_server import FakeKfp
from recsys_tfx.kubeflow import cron
from recsys_tfx import cli
from recsys_tfx.kubeflow import compile as kf_compile
from recsys_tfx.kubeflow import config as kf_config
from recsys_tfx.kubeflow import schedule as kf_schedule
from recsys_tfx.kubeflow.kfp_api import HttpTransport, KfpClient, KfpError
from recsys_tfx.pipeline import configs

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KUBEFLOW_YAML = os.path.join(REPO, "configs", "kubeflow.yaml")


def recsys(*argv) -> int:
  """The `recsys` command, in-process."""
  return cli.main(list(argv))


@pytest.fixture(scope="module")
def kf():
  return kf_config.load(KUBEFLOW_YAML)


@pytest.fixture(scope="module")
def spec(kf):
  return kf_compile.compile_spec(kf)


@pytest.fixture(scope="module")
def local_pipeline(kf):
  """The pipeline LocalDagRunner runs, from the same create_pipeline and config."""
  from recsys_tfx.pipeline.pipeline import create_pipeline
  config = configs.load(os.path.join(REPO, kf.pipeline_config))
  return create_pipeline(config, "/tmp/data", kf.local_schema_file())


@pytest.fixture
def spec_file(spec, tmp_path):
  path = tmp_path / "spec.json"
  path.write_text(json.dumps(spec))
  return str(path)


def _node_of(task: str, node_ids) -> str:
  """KFP task -> local node id (TFX compiles a Resolver into '<id>-<input>-resolver' tasks)."""
  if task in node_ids:
    return task
  owners = [n for n in node_ids if task.startswith(n + "-")]
  assert len(owners) == 1, f"task {task} matches no local node"
  return owners[0]


def test_every_local_component_is_a_task_with_the_same_dependencies(spec, local_pipeline):
  local = {n.id: {u.id for u in n.upstream_nodes} for n in local_pipeline.components}
  compiled = {}
  for task, body in spec["root"]["dag"]["tasks"].items():
    node = _node_of(task, local)
    deps = {_node_of(d, local) for d in body.get("dependentTasks", [])} - {node}
    compiled.setdefault(node, set()).update(deps)
  assert compiled == local
  assert {"RetrievalTrainer", "RankingTrainer", "Transform", "RetrievalPusher"} <= set(local)


def _executor(spec, task: str):
  label = spec["components"][spec["root"]["dag"]["tasks"][task]["componentRef"]["name"]]
  return spec["deploymentSpec"]["executors"][label["executorLabel"]]


def test_image_and_pipeline_root_are_set(spec, kf):
  containers = [e["container"] for e in spec["deploymentSpec"]["executors"].values()
                if "container" in e]
  assert containers and all(c["image"] == kf.image for c in containers)
  assert spec["defaultPipelineRoot"] == kf.pipeline_root
  text = json.dumps(spec)
  assert REPO not in text  # nothing points at this machine
  schema = spec["root"]["dag"]["tasks"]["ImportSchemaGen"]["inputs"]["parameters"]
  assert schema["schema_file"]["runtimeValue"]["constantValue"]["stringValue"] == \
      "/pipeline/schema/synthetic/schema.pbtxt"
  assert f"{kf.serving_dir}/retrieval" in text and kf.data_dir in text


def test_beam_args_reach_the_components_that_use_beam(spec, kf, local_pipeline):
  from tfx.dsl.components.base.executor_spec import BeamExecutorSpec
  beam = [c.id for c in local_pipeline.components
          if isinstance(getattr(c, "executor_spec", None), BeamExecutorSpec)]
  assert {"TimeSplitExampleGen", "StatisticsGen", "Transform"} <= set(beam)
  assert any(a.startswith("--runner=") for a in kf.beam_args)
  for task in beam:
    args = _executor(spec, task)["container"]["args"]
    assert all(a in args for a in kf.beam_args), (task, args)


def test_compile_cli_writes_the_spec(tmp_path):
  out = tmp_path / "build" / "recsys.json"
  assert recsys("kubeflow", "compile", "--config", KUBEFLOW_YAML, "--output", str(out)) == 0
  written = json.loads(out.read_text())
  assert written["pipelineInfo"]["name"] == "recsys-demo" and "root" in written


def test_compile_refuses_a_local_pipeline_root(tmp_path, capsys):
  out = tmp_path / "spec.json"
  code = recsys("kubeflow", "compile", "--config", KUBEFLOW_YAML, "--output", str(out),
                "--pipeline-root", str(tmp_path / "root"))
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1
  assert "pipeline_root" in err and "local path" in err
  assert not out.exists() and not (tmp_path / "root").exists()


@pytest.mark.parametrize("given, sent", [
    ("0 3 * * *", "0 0 3 * * *"),
    ("*/15 9-17 * * MON-FRI", "0 */15 9-17 * * MON-FRI"),
    ("30 0 3 1,15 * ?", "30 0 3 1,15 * ?"),
    ("@daily", "@daily"),
    ("@every 6h", "@every 6h"),
])
def test_cron_becomes_kfps_six_field_form(given, sent):
  assert cron.to_kfp(given) == sent


@pytest.mark.parametrize("bad, why", [
    ("0 25 * * *", "hour 25 is out of range 0-23"),
    ("0 3 * *", "expected 5 fields"),
    ("61 * * * *", "minute 61"),
    ("0 3 * * MON-XYZ", "day-of-week 'XYZ'"),
    ("0 3 * * */0", "step '0'"),
    ("0 5-2 * * *", "runs backwards"),
    ("@sometimes", "unknown descriptor"),
])
def test_invalid_cron_is_named(bad, why):
  with pytest.raises(cron.CronError, match=why):
    cron.to_kfp(bad)


def test_schedule_requests_as_they_reach_the_server(spec, kf):
  with FakeKfp() as server:
    result = kf_schedule.schedule(KfpClient(HttpTransport(server.host)), spec, kf.schedule)
  calls = [(r["method"], r["path"]) for r in server.requests]
  assert calls == [
      ("GET", "/apis/v2beta1/healthz"),
      ("GET", "/apis/v2beta1/pipelines"),
      ("POST", "/apis/v2beta1/pipelines"),
      ("POST", "/apis/v2beta1/pipelines/upload_version"),
      ("GET", "/apis/v2beta1/experiments"),
      ("POST", "/apis/v2beta1/experiments"),
      ("GET", "/apis/v2beta1/recurringruns"),
      ("POST", "/apis/v2beta1/recurringruns"),
  ]
  upload = server.requests[3]
  assert upload["query"]["pipelineid"] == result.pipeline_id
  filename, data = upload["files"]["uploadfile"]
  assert filename.endswith(".yaml") and yaml.safe_load(data) == spec

  body = server.requests[-1]["json"]
  assert body["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}  # kf.schedule: 0 3 * * *
  assert body["pipeline_version_reference"] == {
      "pipeline_id": result.pipeline_id, "pipeline_version_id": result.pipeline_version_id}
  assert body["runtime_config"] == {"parameters": {}, "pipeline_root": kf.pipeline_root}
  assert body["experiment_id"] == result.experiment_id
  assert body["display_name"] == kf.schedule.display_name and body["mode"] == "ENABLE"
  assert body["max_concurrency"] == 1 and body["no_catchup"] is True


def test_second_schedule_replaces_the_first(spec, kf):
  with FakeKfp() as server:
    client = KfpClient(HttpTransport(server.host))
    first = kf_schedule.schedule(client, spec, kf.schedule)
    kf.schedule.cron, old_cron = "30 4 * * SUN", kf.schedule.cron
    try:
      second = kf_schedule.schedule(client, spec, kf.schedule)
    finally:
      kf.schedule.cron = old_cron
    assert second.pipeline_id == first.pipeline_id  # same pipeline, a new version
    assert second.pipeline_version_id != first.pipeline_version_id
    assert second.replaced == [first.recurring_run_id]
    assert list(server.recurring_runs) == [second.recurring_run_id]
    live = server.recurring_runs[second.recurring_run_id]
    assert live["trigger"]["cron_schedule"]["cron"] == "0 30 4 * * SUN"
    assert server.requests[-1]["method"] == "DELETE"  # deleted only after the new one exists


def test_runtime_parameters_are_checked_against_the_spec(spec, kf):
  with_params = {**spec, "root": {**spec["root"], "inputDefinitions": {
      "parameters": {"train_steps": {"parameterType": "NUMBER_INTEGER"}}}}}
  schedule = kf_config.ScheduleConfig(parameters={"train_steps": 100})
  with FakeKfp() as server:
    kf_schedule.schedule(KfpClient(HttpTransport(server.host)), with_params, schedule)
    assert server.requests[-1]["json"]["runtime_config"]["parameters"] == {"train_steps": 100}
    before = len(server.requests)
    with pytest.raises(KfpError, match=r"\['epochs'\] are not parameters"):
      kf_schedule.schedule(KfpClient(HttpTransport(server.host)), spec,
                           kf_config.ScheduleConfig(parameters={"epochs": 3}))
    assert len(server.requests) == before  # nothing sent


def test_schedule_cli_dry_run_prints_and_sends_nothing(spec_file, capsys):
  with FakeKfp() as server:
    code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                  "--host", server.host, "--dry-run")
  out = capsys.readouterr().out
  assert code == 0 and server.requests == []
  assert f"POST {server.host}/apis/v2beta1/recurringruns" in out
  assert '"cron": "0 0 3 * * *"' in out and "uploadfile: " in out


def test_schedule_cli_sends_and_prints_ids(spec_file, capsys):
  with FakeKfp() as server:
    code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                  "--host", server.host, "--cron", "15 2 * * *")
  result = json.loads(capsys.readouterr().out)
  assert code == 0 and result["cron"] == "0 15 2 * * *"
  assert result["recurring_run_id"] in server.recurring_runs


@pytest.mark.parametrize("argv, message", [
    (["--cron", "0 3 * * 8"], "invalid cron expression '0 3 * * 8'"),
    (["--cron", "every night"], "invalid cron expression"),
    (["--pipeline-root", "runs/demo"], "is a local path"),
    (["--spec", "/nonexistent/spec.json"], "does not exist"),
])
def test_schedule_cli_bad_input_sends_nothing(spec_file, capsys, argv, message):
  with FakeKfp() as server:
    args = ["kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--host", server.host]
    code = recsys(*(args + (argv if "--spec" in argv else ["--spec", spec_file] + argv)))
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1 and message in err, err
  assert server.requests == []


def test_schedule_cli_unreachable_host(spec_file, capsys):
  with FakeKfp() as server:  # start and stop a server: its port is then closed
    host = server.host
  code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                "--host", host)
  err = capsys.readouterr().err.strip()
  assert code == 2 and len(err.splitlines()) == 1
  assert f"cannot reach Kubeflow Pipelines at {host}" in err


def test_schedule_cli_rejects_a_host_that_is_not_a_url(spec_file, capsys):
  code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                "--host", "kfp.example.com")
  assert code == 2 and "is not an http(s) URL" in capsys.readouterr().err


def test_server_errors_are_one_line(spec, kf):
  with FakeKfp() as server:
    server.route = lambda r: (500, {"code": 13, "message": "database\nis down"})
    with pytest.raises(KfpError) as e:
      kf_schedule.schedule(KfpClient(HttpTransport(server.host)), spec, kf.schedule)
  assert "HTTP 500: database is down" in str(e.value) and "\n" not in str(e.value)


def _with_credentials(host: str, user: str = "admin", password: str = "s3cret-pw") -> str:
  return host.replace("http://", f"http://{user}:{password}@")


def test_credentials_in_host_are_masked_in_the_dry_run(spec_file, capsys):
  with FakeKfp() as server:
    code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                  "--host", _with_credentials(server.host), "--dry-run")
  out, err = capsys.readouterr()
  assert code == 0 and server.requests == []
  assert "s3cret-pw" not in out + err and "admin:" not in out + err
  masked = server.host.replace("http://", "http://***:***@")
  assert f"POST {masked}/apis/v2beta1/recurringruns" in out


def test_credentials_in_host_are_sent_as_basic_auth_but_never_printed(spec_file, capsys):
  import base64
  with FakeKfp() as server:
    code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                  "--host", _with_credentials(server.host))
  out, err = capsys.readouterr()
  assert code == 0 and "s3cret-pw" not in out + err
  assert json.loads(out)["host"] == server.host.replace("http://", "http://***:***@")
  expected = "Basic " + base64.b64encode(b"admin:s3cret-pw").decode()
  assert all(r["headers"].get("Authorization") == expected for r in server.requests)


@pytest.mark.parametrize("failure", ["unreachable", "server error", "not a url"])
def test_credentials_in_host_are_masked_in_errors(spec_file, capsys, failure):
  with FakeKfp() as server:
    host = _with_credentials(server.host)
    if failure == "server error":
      server.route = lambda r: (500, {"code": 13, "message": "no such user admin:s3cret-pw"})
      code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                    "--host", host)
  if failure == "unreachable":
    code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                  "--host", host)
  elif failure == "not a url":
    code = recsys("kubeflow", "schedule", "--config", KUBEFLOW_YAML, "--spec", spec_file,
                  "--host", "admin:s3cret-pw@kfp.example.com")
  err = capsys.readouterr().err
  assert code == 2 and err.startswith("error: ")
  assert "s3cret-pw" not in err, err


SPANS = "spans:gs://my-bucket/recsys/input/{YYYY}-{MM}-{DD}"


def test_span_input_reaches_the_example_gen_which_is_never_cached(kf, tmp_path):
  """With data: spans:<pattern>, the compiled ExampleGen carries the pattern and window
  (it resolves the newest spans each time it runs) and is not cached; the rest is."""
  import dataclasses
  nightly = tmp_path / "nightly.yaml"
  with open(os.path.join(REPO, kf.pipeline_config)) as f:
    nightly.write_text(f.read() + "\ndata_spans:\n  window_spans: 3\n  skip_bad_spans: true\n")
  spec = kf_compile.compile_spec(dataclasses.replace(kf, pipeline_config=str(nightly),
                                                     data=SPANS))
  tasks = spec["root"]["dag"]["tasks"]
  parameters = tasks["TimeSplitExampleGen"]["inputs"]["parameters"]
  custom = json.loads(parameters["custom_config"]["runtimeValue"]["constantValue"]
                      ["stringValue"])
  assert (custom["span_pattern"], custom["window_spans"], custom["skip_bad_spans"],
          custom["spans"]) == (SPANS.partition(":")[2], 3, True, [])
  assert tasks["TimeSplitExampleGen"]["cachingOptions"] == {"enableCache": False}
  assert tasks["Transform"]["cachingOptions"] == {"enableCache": True}


@pytest.mark.parametrize("data, message", [
    ("spans:/local/{SPAN}", "must be spans:<bucket URI pattern>"),
    ("gs://b/data.csv", "must be spans:<bucket URI pattern>"),
    ("spans:gs://b/input/{YYYY}-{MM}", "expected {SPAN} once")])
def test_a_span_pattern_pods_cannot_read_is_refused(data, message):
  with pytest.raises(configs.ConfigError, match=message):
    kf_config.load(KUBEFLOW_YAML, {"data": data})
