"""Config for a real TF Serving: models.config and batching_parameters.txt parse as TF
Serving's protos, and kubeflow/serving/tf-serving.yaml reads them where they are written,
on the ports the client uses. (No cluster here: the YAML is checked, not applied.)"""
import os

import pytest
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, text_format, wrappers_pb2
from google.protobuf import message_factory
from tensorflow_serving.config import model_server_config_pb2

from recsys_tfx.serving import cli_commands, client, model_server, tf_serving_config

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MANIFEST = os.path.join(REPO, "kubeflow", "serving", "tf-serving.yaml")


def batching_parameters_class():
  """TF Serving's BatchingParameters message (session_bundle_config.proto: fields 1-4 are
  Int64Value), built here because tensorflow-serving-api does not ship it."""
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  proto = descriptor_pb2.FileDescriptorProto(
      name="session_bundle_config.proto", package="tensorflow.serving", syntax="proto3",
      dependency=["google/protobuf/wrappers.proto"])
  message = proto.message_type.add(name="BatchingParameters")
  for number, name in enumerate(["max_batch_size", "batch_timeout_micros",
                                 "max_enqueued_batches", "num_batch_threads"], start=1):
    message.field.add(name=name, number=number, type_name=".google.protobuf.Int64Value",
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
  pool.Add(proto)
  descriptor = pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters")
  return message_factory.MessageFactory(pool).GetPrototype(descriptor)  # protobuf 3.20


@pytest.fixture
def model_base(tmp_path):
  for name in ("retrieval", "ranking"):
    os.makedirs(tmp_path / "serving_models" / name / "1")
  os.makedirs(tmp_path / "serving_models" / ".tmp-staging")
  return tmp_path / "serving_models"


def test_export_serving_config_writes_both_files(model_base, tmp_path, capsys):
  out = tmp_path / "config"
  assert cli_commands.main(["export-serving-config", "--model-base", str(model_base),
                            "--out", str(out), "--max-batch-size", "300"]) == 0
  assert "models: ranking, retrieval" in capsys.readouterr().out

  config = text_format.Parse((out / "models.config").read_text(),
                             model_server_config_pb2.ModelServerConfig())
  entries = {c.name: c for c in config.model_config_list.config}
  assert sorted(entries) == ["ranking", "retrieval"]
  assert entries["retrieval"].base_path == "/models/retrieval"
  assert entries["ranking"].model_platform == "tensorflow"

  batching = text_format.Parse((out / "batching_parameters.txt").read_text(),
                               batching_parameters_class()())
  defaults = tf_serving_config.BatchingParameters()
  assert batching.max_batch_size.value == 300
  assert batching.batch_timeout_micros.value == defaults.batch_timeout_micros
  assert batching.num_batch_threads.value == defaults.num_batch_threads
  assert batching.max_enqueued_batches.value == defaults.max_enqueued_batches


def test_files_go_into_the_model_base_by_default(model_base):
  assert cli_commands.main(["export-serving-config", "--model-base", str(model_base),
                            "--container-base", "/mnt/models/"]) == 0
  config = text_format.Parse((model_base / "models.config").read_text(),
                             model_server_config_pb2.ModelServerConfig())
  assert [c.base_path for c in config.model_config_list.config] == [
      "/mnt/models/ranking", "/mnt/models/retrieval"]
  assert (model_base / "batching_parameters.txt").exists()


def test_export_serving_config_errors(tmp_path, capsys):
  assert cli_commands.main(["export-serving-config", "--model-base",
                            str(tmp_path / "missing")]) == 2
  assert "is not a directory" in capsys.readouterr().err
  assert cli_commands.main(["export-serving-config", "--model-base", str(tmp_path)]) == 2
  assert "no model directories" in capsys.readouterr().err
  assert cli_commands.main(["export-serving-config", "--model-base", str(tmp_path),
                            "--num-batch-threads", "0"]) == 2
  assert "num_batch_threads must be an integer >= 1" in capsys.readouterr().err


def _manifest():
  with open(MANIFEST) as f:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(f)}


def test_manifest_parses_and_matches_the_config_writer():
  docs = _manifest()
  assert set(docs) == {"PersistentVolumeClaim", "Deployment", "Service"}
  pod = docs["Deployment"]["spec"]["template"]["spec"]
  container, = pod["containers"]
  assert container["image"].startswith("google/tf-serving-scann:")
  args = container["args"]
  base = tf_serving_config.CONTAINER_BASE
  assert f"--model_config_file={base}/{tf_serving_config.MODELS_CONFIG}" in args
  assert "--enable_batching" in args
  assert f"--batching_parameters_file={base}/{tf_serving_config.BATCHING_PARAMETERS}" in args
  assert f"--port={tf_serving_config.GRPC_PORT}" in args
  assert f"--rest_api_port={tf_serving_config.REST_PORT}" in args

  ports = {p["name"]: p["containerPort"] for p in container["ports"]}
  assert ports == {"grpc": tf_serving_config.GRPC_PORT, "http": tf_serving_config.REST_PORT}
  mount, = container["volumeMounts"]
  assert mount["mountPath"] == base
  volume, = pod["volumes"]
  assert volume["name"] == mount["name"]
  assert volume["persistentVolumeClaim"]["claimName"] == \
      docs["PersistentVolumeClaim"]["metadata"]["name"]

  probe = container["readinessProbe"]["httpGet"]
  assert probe["port"] == "http" and probe["path"] == f"/v1/models/{client.RETRIEVAL_MODEL}"

  service = docs["Service"]["spec"]
  assert service["selector"] == docs["Deployment"]["spec"]["selector"]["matchLabels"]
  assert {p["name"]: (p["port"], p["targetPort"]) for p in service["ports"]} == {
      "grpc": (tf_serving_config.GRPC_PORT, "grpc"),
      "http": (tf_serving_config.REST_PORT, "http")}


def test_grpc_port_is_the_one_our_server_and_client_default_to():
  assert model_server.DEFAULT_PORT == tf_serving_config.GRPC_PORT
  assert client.DEFAULT_TARGET.endswith(f":{tf_serving_config.GRPC_PORT}")
