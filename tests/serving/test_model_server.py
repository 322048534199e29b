"""The model server end to end: one real server process per module on a free port, called
through tensorflow-serving-api's stubs over a real socket, serving SavedModels made here
(no pipeline run needed)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_log_pb2,
                                     prediction_service_pb2_grpc)

import serving_toys
from recsys_tfx.schema import push_manifest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
K = 3
POLL_SECONDS = 0.2
MAX_BATCH = 8
RPC_TIMEOUT = 20
State = get_model_status_pb2.ModelVersionStatus.State


# --- test models ---------------------------------------------------------------------------

class Toy(tf.Module):
  """Top-K items from a hash of the user id. Item ids start with "v<version>-" and scores
  are offset by the version, so which version answered is visible in the outputs."""

  def __init__(self, version: int):
    super().__init__()
    self.prefix = tf.constant(f"v{version}")
    self.offset = tf.Variable(float(version))

  def _top_k(self, user_id, shift):
    base = tf.strings.to_hash_bucket_fast(user_id, 1000)[:, None] + shift[:, None]
    items = base + tf.range(K, dtype=tf.int64)[None, :]
    item_ids = tf.strings.join([self.prefix, tf.strings.as_string(items)], separator="-")
    return {"item_ids": item_ids, "scores": tf.cast(items, tf.float32) / 1000 + self.offset}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  def serving_default(self, user_id):
    return self._top_k(user_id, tf.zeros_like(user_id, tf.int64))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.int64, name="hour")])
  def recommend_with_context(self, user_id, hour):
    return self._top_k(user_id, hour)


def save_toy(path: str, version: int) -> None:
  module = Toy(version)
  tf.saved_model.save(module, path, signatures={
      "serving_default": module.serving_default,
      "recommend_with_context": module.recommend_with_context})


class ScannRecommender(tf.Module):
  """A user embedding table in front of a real TFRS ScaNN index (ScaNN's custom ops)."""

  def __init__(self):
    super().__init__()
    import tensorflow_recommenders as tfrs
    rng = np.random.default_rng(0)
    self.users = tf.Variable(rng.normal(size=(10, 8)).astype(np.float32))
    self.index = tfrs.layers.factorized_top_k.ScaNN(k=5, num_leaves=2, num_leaves_to_search=2)
    self.index.index(tf.constant(rng.normal(size=(50, 8)).astype(np.float32)),
                     tf.constant([f"item{i}" for i in range(50)]))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  def serving_default(self, user_id):
    query = tf.gather(self.users, tf.strings.to_hash_bucket_fast(user_id, 10))
    scores, item_ids = self.index(query)
    return {"item_ids": item_ids, "scores": scores}


def save_scann(path: str, version: int) -> None:
  module = ScannRecommender()
  tf.saved_model.save(module, path, signatures={"serving_default": module.serving_default},
                      options=tf.saved_model.SaveOptions(namespace_whitelist=["Scann"]))


def write_warmup(path: str, request: predict_pb2.PredictRequest) -> None:
  """TF Serving's warm-up file: PredictionLog records in assets.extra/."""
  os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
  record = prediction_log_pb2.PredictionLog()
  record.predict_log.request.CopyFrom(request)
  with tf.io.TFRecordWriter(os.path.join(path, "assets.extra", "tf_serving_warmup_requests")) as w:
    w.write(record.SerializeToString())


def save_toy_with_warmup(path: str, version: int) -> None:
  save_toy(path, version)
  write_warmup(path, predict_request("any", {"user_id": ["u0"]}))


def save_toy_with_failing_warmup(path: str, version: int) -> None:
  save_toy(path, version)
  write_warmup(path, predict_request("any", {"no_such_input": ["u0"]}))


def save_garbage(path: str, version: int) -> None:
  os.makedirs(path)
  with open(os.path.join(path, "saved_model.pb"), "wb") as f:
    f.write(b"\x08\x96\x01 this is not a SavedModel")


def save_variables_only(path: str, version: int) -> None:
  """What a half-copied version looks like: no saved_model.pb yet."""
  save_toy(path + ".full", version)
  shutil.copytree(os.path.join(path + ".full", "variables"), os.path.join(path, "variables"))
  shutil.rmtree(path + ".full")


def push(model_base, name: str, version: int, save=save_toy, marker: bool = True) -> str:
  """As the pipeline's pusher does: writes a version next to its target under a name that
  is not a version number, writes the completion marker last, then renames it into place,
  so the server never sees half a version."""
  model_dir = os.path.join(str(model_base), name)
  os.makedirs(model_dir, exist_ok=True)
  staging = os.path.join(model_dir, f".tmp-{version}")
  final = os.path.join(model_dir, str(version))
  save(staging, version)
  if marker:
    push_manifest.write_marker(staging)
  os.rename(staging, final)
  return final


# --- requests ------------------------------------------------------------------------------

def predict_request(model: str, inputs, signature: str = "", version=None, label: str = "",
                    output_filter=()) -> predict_pb2.PredictRequest:
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model
  request.model_spec.signature_name = signature
  if version is not None:
    request.model_spec.version.value = version
  if label:
    request.model_spec.version_label = label
  for name, value in inputs.items():
    proto = value if isinstance(value, tensor_pb2.TensorProto) else tf.make_tensor_proto(value)
    request.inputs[name].CopyFrom(proto)
  request.output_filter.extend(output_filter)
  return request


def metadata_request(model: str, fields=("signature_def",)):
  request = get_model_metadata_pb2.GetModelMetadataRequest()
  request.model_spec.name = model
  request.metadata_field.extend(fields)
  return request


def status_request(model: str, version=None):
  request = get_model_status_pb2.GetModelStatusRequest()
  request.model_spec.name = model
  if version is not None:
    request.model_spec.version.value = version
  return request


def outputs(response) -> dict:
  return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


def wait_for(condition, what: str, timeout: float = 60.0):
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return
    time.sleep(0.05)
  raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- the server ----------------------------------------------------------------------------

class ServerProcess:

  def __init__(self, process: subprocess.Popen, port: int, log_path):
    self.process, self.port, self.log_path = process, port, log_path
    self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    self.prediction = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
    self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)

  def log(self) -> str:
    return self.log_path.read_text()

  def predict(self, request):
    return self.prediction.Predict(request, timeout=RPC_TIMEOUT)

  def statuses(self, model: str) -> dict:
    """version -> ModelVersionStatus; {} while the server does not know the model."""
    try:
      response = self.models.GetModelStatus(status_request(model), timeout=RPC_TIMEOUT)
    except grpc.RpcError as e:
      assert e.code() == grpc.StatusCode.NOT_FOUND, e
      return {}
    return {s.version: s for s in response.model_version_status}

  def available(self, model: str):
    return [v for v, s in self.statuses(model).items() if s.state == State.AVAILABLE]


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  base = tmp_path_factory.mktemp("serving_models")
  push(base, "toy", 1)
  push(base, "scann", 1, save_scann)
  push(base, "warm", 1, save_toy_with_warmup)
  return base


@pytest.fixture(scope="module")
def server(model_base, tmp_path_factory):
  run_dir = tmp_path_factory.mktemp("server")
  ready_file, log_path = run_dir / "ready.json", run_dir / "server.log"
  command = [sys.executable, "-m", "recsys_tfx.serving.cli_commands", "serve", "--model-base",
             str(model_base),
             "--port", "0", "--rest-api-port", "0", "--poll-seconds", str(POLL_SECONDS),
             "--max-batch-size", str(MAX_BATCH), "--ready-file", str(ready_file)]
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  try:
    wait_for(lambda: ready_file.exists() or process.poll() is not None, "the server to start",
             timeout=120)
    assert process.poll() is None, f"the server exited:\n{log_path.read_text()}"
    served = ServerProcess(process, json.loads(ready_file.read_text())["port"], log_path)
    yield served
    served.channel.close()
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
    assert process.returncode == 0, served.log()
    assert served.log().rstrip().endswith("stopped"), served.log()
    assert not ready_file.exists()
  finally:
    if process.poll() is None:  # never leave a server behind
      process.kill()
      process.wait()


# --- serving -------------------------------------------------------------------------------

def test_ready_line_names_the_models_and_the_port(server):
  assert f"serving scann v1, toy v1, warm v1 on 127.0.0.1:{server.port} (plaintext)\n" \
      in server.log()


def test_predict_equals_the_saved_model_called_in_process(server, model_base):
  users = ["u0", "u1", "someone else"]
  response = server.predict(predict_request("toy", {"user_id": users}))

  direct = tf.saved_model.load(str(model_base / "toy" / "1")).signatures["serving_default"]
  expected = direct(user_id=tf.constant(users))
  got = outputs(response)
  assert sorted(got) == ["item_ids", "scores"]
  np.testing.assert_array_equal(got["item_ids"], expected["item_ids"].numpy())
  np.testing.assert_array_equal(got["scores"], expected["scores"].numpy())
  assert got["item_ids"].shape == (3, K)
  # Encoded the way TF Serving encodes by default, for clients that read the value fields.
  assert list(response.outputs["scores"].float_val) == expected["scores"].numpy().ravel().tolist()
  spec = response.model_spec
  assert (spec.name, spec.version.value, spec.signature_name) == ("toy", 1, "serving_default")


def test_predict_named_signature_specific_version_and_output_filter(server, model_base):
  inputs = {"user_id": ["u0", "u1"], "hour": np.array([3, 23], np.int64)}
  request = predict_request("toy", inputs, signature="recommend_with_context", version=1,
                            output_filter=["scores"])
  response = server.predict(request)

  direct = tf.saved_model.load(str(model_base / "toy" / "1")).signatures["recommend_with_context"]
  expected = direct(**{k: tf.constant(v) for k, v in inputs.items()})
  assert list(response.outputs) == ["scores"]
  np.testing.assert_array_equal(outputs(response)["scores"], expected["scores"].numpy())
  assert response.model_spec.signature_name == "recommend_with_context"


def test_scann_model_is_served(server, model_base):
  import scann  # noqa: F401  (loading the model here needs ScaNN's ops too)
  users = [f"u{i}" for i in range(4)]
  response = server.predict(predict_request("scann", {"user_id": users}))

  direct = tf.saved_model.load(str(model_base / "scann" / "1")).signatures["serving_default"]
  expected = direct(user_id=tf.constant(users))
  got = outputs(response)
  assert got["item_ids"].shape == (4, 5)
  np.testing.assert_array_equal(got["item_ids"], expected["item_ids"].numpy())
  np.testing.assert_allclose(got["scores"], expected["scores"].numpy(), rtol=1e-6)


def test_get_model_status_reports_the_available_version(server):
  response = server.models.GetModelStatus(status_request("toy"), timeout=RPC_TIMEOUT)
  assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] \
      == [(1, State.AVAILABLE, 0)]
  response = server.models.GetModelStatus(status_request("toy", 1), timeout=RPC_TIMEOUT)
  assert [(s.version, s.state) for s in response.model_version_status] == [(1, State.AVAILABLE)]


def test_get_model_metadata_returns_the_signature_defs(server):
  response = server.prediction.GetModelMetadata(metadata_request("toy"), timeout=RPC_TIMEOUT)
  assert (response.model_spec.name, response.model_spec.version.value) == ("toy", 1)
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  assert response.metadata["signature_def"].Unpack(signature_map)
  signatures = signature_map.signature_def
  assert {"serving_default", "recommend_with_context"} <= set(signatures)

  default = signatures["serving_default"]
  assert default.method_name == "tensorflow/serving/predict"
  assert {n: t.dtype for n, t in default.inputs.items()} == {"user_id": types_pb2.DT_STRING}
  assert [d.size for d in default.inputs["user_id"].tensor_shape.dim] == [-1]
  assert {n: t.dtype for n, t in default.outputs.items()} == {
      "item_ids": types_pb2.DT_STRING, "scores": types_pb2.DT_FLOAT}
  context = signatures["recommend_with_context"]
  assert {n: t.dtype for n, t in context.inputs.items()} == {
      "user_id": types_pb2.DT_STRING, "hour": types_pb2.DT_INT64}


def test_warm_up_requests_are_replayed_before_a_version_serves(server):
  assert "warm version 1: replayed 1 warm-up request(s)" in server.log()
  assert server.available("warm") == [1]


# --- bad requests --------------------------------------------------------------------------

def _malformed_user_ids():
  proto = tf.make_tensor_proto(["a", "b"])
  proto.tensor_shape.dim[0].size = 1  # one string promised, two sent
  return proto


INVALID, NOT_FOUND = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
USERS = {"user_id": ["u0", "u1"]}
BAD_REQUESTS = {
    "unknown model": (
        "Predict", lambda: predict_request("nope", USERS),
        NOT_FOUND, "Servable not found for request: Latest(nope)"),
    "unknown version": (
        "Predict", lambda: predict_request("toy", USERS, version=7),
        NOT_FOUND, "Servable not found for request: Specific(toy, 7)"),
    "version label": (
        "Predict", lambda: predict_request("toy", USERS, label="stable"),
        INVALID, "Unrecognized servable version label: stable"),
    "no model name": (
        "Predict", lambda: predict_request("", USERS),
        INVALID, "ModelSpec has no name specified."),
    "unknown signature": (  # TF Serving answers FAILED_PRECONDITION here
        "Predict", lambda: predict_request("toy", USERS, signature="nope"),
        grpc.StatusCode.FAILED_PRECONDITION, 'Serving signature key "nope" not found.'),
    "missing input": (
        "Predict", lambda: predict_request("toy", USERS, signature="recommend_with_context"),
        INVALID, "Missing but required: {hour}"),
    "unexpected input": (
        "Predict", lambda: predict_request("toy", {**USERS, "hour": np.array([1, 2])}),
        INVALID, "Sent extra: {hour}"),
    "misspelled input": (
        "Predict", lambda: predict_request("toy", {"userid": ["u0"]}),
        INVALID, "input tensor alias not found in signature: userid. "
                 "Inputs expected to be in the set {user_id}."),
    "wrong dtype": (
        "Predict", lambda: predict_request("toy", {"user_id": [1.0, 2.0]}),
        INVALID, "input 'user_id' has dtype DT_FLOAT; the signature expects DT_STRING"),
    "int32 for int64": (  # tf.make_tensor_proto([3, 23]) makes DT_INT32
        "Predict", lambda: predict_request("toy", {**USERS, "hour": [3, 23]},
                                           signature="recommend_with_context"),
        INVALID, "input 'hour' has dtype DT_INT32; the signature expects DT_INT64"),
    "wrong rank": (
        "Predict", lambda: predict_request("toy", {"user_id": [["u0"], ["u1"]]}),
        INVALID, "input 'user_id' has shape [2,1]; the signature expects [?] (rank 1"),
    "malformed tensor": (
        "Predict", lambda: predict_request("toy", {"user_id": _malformed_user_ids()}),
        INVALID, "tensor parsing error: user_id"),
    "batch too large": (
        "Predict", lambda: predict_request("toy", {"user_id": ["u"] * (MAX_BATCH + 1)}),
        INVALID, f"Task size {MAX_BATCH + 1} is larger than maximum input batch size "
                 f"{MAX_BATCH}"),
    "unknown output": (
        "Predict", lambda: predict_request("toy", USERS, output_filter=["nope"]),
        INVALID, "output tensor alias not found in signature: nope"),
    "metadata of unknown model": (
        "GetModelMetadata", lambda: metadata_request("nope"),
        NOT_FOUND, "Servable not found for request: Latest(nope)"),
    "unsupported metadata field": (
        "GetModelMetadata", lambda: metadata_request("toy", ["signature_def", "nope"]),
        INVALID, "Metadata field nope is not supported"),
    "status of unknown model": (
        "GetModelStatus", lambda: status_request("nope"),
        NOT_FOUND, "Could not find any versions of model nope"),
    "status of unknown version": (
        "GetModelStatus", lambda: status_request("toy", 7),
        NOT_FOUND, "Could not find version 7 of model toy"),
}


@pytest.mark.parametrize("case", BAD_REQUESTS)
def test_bad_request_gets_tf_servings_status_and_the_server_keeps_serving(server, case):
  method, make_request, code, message = BAD_REQUESTS[case]
  stub = server.models if method == "GetModelStatus" else server.prediction
  with pytest.raises(grpc.RpcError) as raised:
    getattr(stub, method)(make_request(), timeout=RPC_TIMEOUT)
  assert raised.value.code() == code
  assert message in raised.value.details()
  assert outputs(server.predict(predict_request("toy", USERS)))["item_ids"].shape == (2, K)


# --- versions ------------------------------------------------------------------------------

def test_new_version_swaps_in_with_zero_failed_requests(server, model_base):
  push(model_base, "swap", 1)
  wait_for(lambda: server.available("swap") == [1], "version 1 of a new model to be served")

  request = predict_request("swap", USERS)
  versions_seen = [[] for _ in range(4)]  # per client thread, in order
  failures = []
  stop = threading.Event()

  def client(seen):
    while not stop.is_set():
      try:
        response = server.predict(request)
      except grpc.RpcError as e:
        failures.append(f"{e.code()}: {e.details()}")
        continue
      version = response.model_spec.version.value
      first_item = outputs(response)["item_ids"][0, 0]
      if not first_item.startswith(f"v{version}-".encode()):
        failures.append(f"version {version} answered with {first_item}")
      seen.append(version)

  threads = [threading.Thread(target=client, args=(seen,)) for seen in versions_seen]
  for thread in threads:
    thread.start()
  try:
    wait_for(lambda: sum(map(len, versions_seen)) >= 40, "requests on version 1")
    push(model_base, "swap", 2)
    wait_for(lambda: all(seen and seen[-1] == 2 for seen in versions_seen),
             "every client to get version 2")
    after = sum(map(len, versions_seen))
    wait_for(lambda: sum(map(len, versions_seen)) >= after + 40, "requests on version 2")
  finally:
    stop.set()
    for thread in threads:
      thread.join()

  assert failures == []
  for seen in versions_seen:
    assert seen[0] == 1 and seen[-1] == 2
    assert seen == sorted(seen), "a client went back to version 1 after the swap"
  assert {v: s.state for v, s in server.statuses("swap").items()} == {
      2: State.AVAILABLE, 1: State.END}
  with pytest.raises(grpc.RpcError) as raised:  # only the newest version stays loaded
    server.predict(predict_request("swap", USERS, version=1))
  assert raised.value.code() == NOT_FOUND


@pytest.mark.parametrize("breakage", [save_garbage, save_variables_only,
                                      save_toy_with_failing_warmup],
                         ids=["garbage saved_model.pb", "no saved_model.pb", "failing warm-up"])
def test_broken_new_version_leaves_the_old_one_serving(server, model_base, breakage):
  name = f"fragile_{breakage.__name__}"
  push(model_base, name, 1)
  wait_for(lambda: server.available(name) == [1], "version 1 to be served")
  push(model_base, name, 2, breakage)
  wait_for(lambda: server.statuses(name).get(2, None) is not None
           and server.statuses(name)[2].state == State.END, "version 2 to fail to load")

  broken = server.statuses(name)[2]
  assert broken.status.error_code != 0 and broken.status.error_message
  time.sleep(POLL_SECONDS * 5)  # several polls: the broken version is not retried
  assert server.log().count(f"failed to load {name} version 2") == 1
  response = server.predict(predict_request(name, USERS))
  assert response.model_spec.version.value == 1
  assert server.available(name) == [1]

  push(model_base, name, 3)  # the next good version is still picked up
  wait_for(lambda: server.available(name) == [3], "version 3 to be served")


def test_version_retried_once_its_files_change(server, model_base, tmp_path):
  """A version that failed because it was half copied loads once the copy completes."""
  name = "completed_late"
  push(model_base, name, 1)
  wait_for(lambda: server.available(name) == [1], "version 1 to be served")
  complete = str(tmp_path / "complete")
  save_toy(complete, 2)

  def variables_only(path, version):
    shutil.copytree(os.path.join(complete, "variables"), os.path.join(path, "variables"))

  partial = push(model_base, name, 2, variables_only)
  wait_for(lambda: 2 in server.statuses(name) and server.statuses(name)[2].state == State.END,
           "the partial version 2 to fail to load")
  for entry in os.listdir(complete):  # the rest of the copy arrives
    if entry != "variables":
      shutil.move(os.path.join(complete, entry), os.path.join(partial, entry))
  wait_for(lambda: server.available(name) == [2], "the completed version 2 to be served")
  assert server.predict(predict_request(name, USERS)).model_spec.version.value == 2


# --- versions that arrive slowly -----------------------------------------------------------

def _save_vocab_toy(path: str, version: int) -> None:
  serving_toys.save_vocab_toy(path, version)


@pytest.mark.parametrize("marker", [True, False],
                         ids=["pushed version copied by hand, marker first",
                              "version without a completion marker"])
def test_half_copied_version_is_never_served(server, model_base, tmp_path, marker):
  """The failure: a version copied in file by file, its assets/user_id written up to a
  line boundary when the server polls, was loaded, served every user past the cut as
  unknown, and never reloaded. Here the old version must answer throughout the copy and
  the new one from the poll after it completes, with every answer right."""
  name = "vocab_marked" if marker else "vocab_unmarked"
  push(model_base, name, 1, _save_vocab_toy)
  wait_for(lambda: server.available(name) == [1], "version 1 to be served")
  source = str(tmp_path / "version2")
  serving_toys.save_vocab_toy(source, 2)
  if marker:
    push_manifest.write_marker(source)
  users = serving_toys.vocab_users()
  # Half from each side of the cut: a half-copied vocabulary answers the second half -1.
  asked = users[:MAX_BATCH // 2] + users[-MAX_BATCH // 2:]
  expected = [users.index(u) for u in asked]
  answers, failures, wrong = [], [], []
  stop = threading.Event()

  def client():
    while not stop.is_set():
      try:
        got = outputs(server.predict(predict_request(name, {"user_id": asked})))
      except grpc.RpcError as e:
        failures.append(f"{e.code()}: {e.details()}")
        continue
      version = int(got["version"][0])
      if got["user_index"].tolist() != expected:
        wrong.append((version, got["user_index"].tolist()))
      answers.append((time.monotonic(), version))

  threads = [threading.Thread(target=client) for _ in range(2)]
  for thread in threads:
    thread.start()
  steps = []
  try:
    # With a marker the copy may pause for many polls; without one it must keep changing
    # between polls (a longer pause is the unmarked case's limit: see
    # test_model_manager's reload test).
    serving_toys.copy_in_failure_order(
        source, str(model_base / name / "2"), pause=POLL_SECONDS * 3 if marker
        else POLL_SECONDS / 5, on_step=lambda step: steps.append((time.monotonic(), step)))
    complete = steps[-1][0]
    wait_for(lambda: answers and answers[-1][1] == 2, "version 2 to answer")
  finally:
    stop.set()
    for thread in threads:
      thread.join()

  assert failures == [] and wrong == []
  before = [version for at, version in answers if at < complete]
  # How many answers fit in the copy depends on the machine's load; that every one during
  # it came from the old version, and right, does not.
  assert before and set(before) == {1}, "the old version answered throughout"
  first_new = min(at for at, version in answers if version == 2)
  assert first_new >= complete
  assert first_new - complete < 20 * POLL_SECONDS + 5, "the new version once it is complete"
  assert f"not loading {name} version 2 yet" in server.log()


def test_deleting_the_live_version_is_a_logged_rollback(server, model_base):
  push(model_base, "rolled", 1)
  push(model_base, "rolled", 2)
  wait_for(lambda: server.available("rolled") == [2], "version 2 to be served")
  shutil.rmtree(model_base / "rolled" / "2")
  wait_for(lambda: server.available("rolled") == [1], "the rollback to version 1")
  assert server.predict(predict_request("rolled", USERS)).model_spec.version.value == 1
  log = server.log()
  assert "swapped rolled from version 2 to version 1" in log
  assert f"rollback: the served version 2 was removed from {model_base / 'rolled'}" in log


# --- hostile requests ----------------------------------------------------------------------

_declared = serving_toys.declared_tensor


HOSTILE = {
    "41 bytes declaring 10^8 strings": (
        {"user_id": _declared([100_000_000])},
        f"Task size 100000000 is larger than maximum input batch size {MAX_BATCH}"),
    "dimensions whose product overflows int64": (
        {"user_id": _declared([1, 2 ** 62, 2 ** 62])},
        "declares [1,4611686018427387904,4611686018427387904] = 21,267,647,932,558,653,966,"
        "460,912,964,485,513,216 values"),
    "a negative dimension": ({"user_id": _declared([-5])}, "negative dimension"),
    "fewer values than declared": (
        {"user_id": _declared([MAX_BATCH], [b"a", b"b", b"c"])},
        "declares shape [8] (8 values) but carries 3 value(s)"),
    "one value over a batch above the limit": (
        {"user_id": _declared([MAX_BATCH + 1])},
        f"Task size {MAX_BATCH + 1} is larger than maximum input batch size {MAX_BATCH}"),
    "tensor_content that is not whole elements": (
        {"user_id": _declared([1], [b"u"]),
         "hour": _declared([1], dtype=types_pb2.DT_INT64, content=b"\0" * 7)},
        "carries values that cannot be counted"),
}


def test_hostile_requests_are_refused_before_any_tensor_is_built(server):
  pid = server.process.pid
  idle = serving_toys.status_kib(pid, "VmRSS")
  with open(f"/proc/{pid}/clear_refs", "w") as f:
    f.write("5")  # resets the peak (VmHWM) to the current RSS
  for case, (inputs, message) in HOSTILE.items():
    signature = "recommend_with_context" if "hour" in inputs else ""
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as raised:
      server.predict(predict_request("toy", inputs, signature=signature))
    assert raised.value.code() == INVALID, case
    assert message in raised.value.details(), (case, raised.value.details())
    assert time.monotonic() - started < 2, case
  with pytest.raises(grpc.RpcError) as raised:  # over the 1 MiB default: gRPC refuses it
    server.predict(predict_request("toy", {"user_id": ["x" * (5 << 20)]}))
  assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
  peak = serving_toys.status_kib(pid, "VmHWM")
  assert peak - idle < 64 * 1024, f"peak RSS {peak} KiB vs {idle} KiB idle"
  assert outputs(server.predict(predict_request("toy", USERS)))["item_ids"].shape == (2, K)


def test_max_receive_message_size_is_configurable(model_base):
  from recsys_tfx.serving.model_server import ModelServer
  served = ModelServer(str(model_base), port=0, poll_seconds=60, max_receive_mb=0.5).start()
  try:
    with grpc.insecure_channel(served.address) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      small = stub.Predict(predict_request("toy", {"user_id": ["x" * (400 << 10)]}),
                           timeout=RPC_TIMEOUT)
      assert small.model_spec.version.value == 1
      with pytest.raises(grpc.RpcError) as raised:
        stub.Predict(predict_request("toy", {"user_id": ["x" * (600 << 10)]}),
                     timeout=RPC_TIMEOUT)
      assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
  finally:
    served.stop(grace=1)


def test_server_logs_reach_stderr_even_after_absl_configured_logging(model_base, tmp_path):
  """absl's first log call installs a WARNING root handler (importing TFX or TFMA makes
  one); `logging.basicConfig(level=INFO)` then did nothing and every swap went unlogged."""
  ready_file, log_path = tmp_path / "ready.json", tmp_path / "server.log"
  code = ("import sys, absl.logging; absl.logging.info('before the server'); "
          "from recsys_tfx import cli; sys.exit(cli.main(sys.argv[1:]))")
  command = [sys.executable, "-c", code, "serve", "--model-base", str(model_base), "--port",
             "0", "--rest-api-port", "-1", "--ready-file", str(ready_file)]
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, cwd=str(tmp_path), stdout=log,
                               stderr=subprocess.STDOUT)
  try:
    wait_for(lambda: ready_file.exists() or process.poll() is not None, "the server to start",
             timeout=120)
  finally:
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=30)
  text = log_path.read_text()
  assert "INFO recsys_tfx.serving.model_manager: serving toy version 1 (loaded in" in text, text
