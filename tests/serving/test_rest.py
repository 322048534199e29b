"""TF Serving's REST API (serving/rest.py) over a real socket with urllib: Predict in row
and columnar format equals gRPC Predict on the same inputs, status and metadata are TF
Serving's JSON, errors are {"error": ...} with TF Serving's HTTP codes, and the metrics
endpoint counts what both APIs answered."""
import base64
import json
import re
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_toys
from recsys_tfx.serving.model_server import ModelServer
from test_model_server import outputs, predict_request, push

RPC_TIMEOUT = 30


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  base = serving_toys.model_base(str(tmp_path_factory.mktemp("serving_models")))
  push(base, "toy", 1)
  return base


@pytest.fixture(scope="module")
def server(model_base):
  served = ModelServer(model_base, port=0, poll_seconds=60, rest_port=0,
                       max_receive_mb=0.25).start()
  yield served
  served.stop(grace=1)


@pytest.fixture(scope="module")
def stub(server):
  with grpc.insecure_channel(server.address) as channel:
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def http(server, method: str, path: str, body=None, raw: bytes = None, headers=None):
  """(status, parsed JSON or text, headers)."""
  data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
  request = urllib.request.Request(f"http://127.0.0.1:{server.rest_port}{path}", data=data,
                                   method=method, headers=headers or {})
  try:
    with urllib.request.urlopen(request, timeout=RPC_TIMEOUT) as answer:
      status, text, got_headers = answer.status, answer.read(), answer.headers
  except urllib.error.HTTPError as e:
    status, text, got_headers = e.code, e.read(), e.headers
  if got_headers.get("Content-Type", "").startswith("application/json"):
    return status, json.loads(text), got_headers
  return status, text.decode(), got_headers


def _grpc(stub, model, inputs, signature=""):
  return outputs(stub.Predict(predict_request(model, inputs, signature=signature),
                              timeout=RPC_TIMEOUT))


def _text(array):
  return [[v.decode() for v in row] for row in array.tolist()]


# --- predict -------------------------------------------------------------------------------

def test_row_format_equals_grpc(server, stub):
  users = ["u0", "u1", "someone else"]
  status, body, _ = http(server, "POST", "/v1/models/toy:predict",
                         {"instances": [{"user_id": u} for u in users]})
  assert status == 200, body
  expected = _grpc(stub, "toy", {"user_id": users})
  predictions = body["predictions"]
  assert [sorted(p) for p in predictions] == [["item_ids", "scores"]] * 3
  assert [p["item_ids"] for p in predictions] == _text(expected["item_ids"])
  np.testing.assert_array_equal(np.array([p["scores"] for p in predictions], np.float32),
                                expected["scores"])
  # A single-input signature also takes bare values.
  status, bare, _ = http(server, "POST", "/v1/models/toy/versions/1:predict",
                         {"instances": users})
  assert status == 200 and bare == body


def test_columnar_format_and_a_named_signature_equal_grpc(server, stub):
  inputs = {"user_id": ["u0", "u1"], "hour": [3, 23], "device": ["tv", "web"]}
  status, body, _ = http(server, "POST", "/v1/models/retrieval:predict",
                         {"signature_name": "recommend_with_context", "inputs": inputs})
  assert status == 200, body
  expected = _grpc(stub, "retrieval", {**inputs, "hour": np.array([3, 23], np.int64)},
                   signature="recommend_with_context")
  assert sorted(body["outputs"]) == ["item_ids", "scores"]
  assert body["outputs"]["item_ids"] == _text(expected["item_ids"])
  np.testing.assert_array_equal(np.array(body["outputs"]["scores"], np.float32),
                                expected["scores"])
  # rank-3 outputs, binary strings sent as {"b64": ...}
  b64 = {"b64": base64.b64encode(b"u0").decode()}
  status, body, _ = http(server, "POST", "/v1/models/retrieval:predict",
                         {"signature_name": "candidates_with_context",
                          "instances": [{"user_id": b64, "hour": 3, "device": "tv"}]})
  assert status == 200, body
  expected = _grpc(stub, "retrieval", {"user_id": ["u0"], "hour": np.array([3], np.int64),
                                       "device": ["tv"]}, signature="candidates_with_context")
  np.testing.assert_array_equal(np.array(body["predictions"][0]["source_ranks"], np.float32),
                                expected["source_ranks"][0])


def test_a_single_output_in_row_format_is_a_plain_list(server, stub):
  rows = [{"user_id": "u", "item_id": f"i{n}", "hour": n, "device": "tv",
           "source_scores": [0.5], "source_ranks": [1.0]} for n in range(3)]
  status, body, _ = http(server, "POST", "/v1/models/ranking:predict", {"instances": rows})
  assert status == 200, body
  columns = {name: [row[name] for row in rows] for name in rows[0]}
  expected = _grpc(stub, "ranking", {**columns, "hour": np.array(columns["hour"], np.int64),
                                     "source_scores": np.array(columns["source_scores"],
                                                               np.float32),
                                     "source_ranks": np.array(columns["source_ranks"],
                                                              np.float32)})
  assert isinstance(body["predictions"], list) and len(body["predictions"]) == 3
  np.testing.assert_array_equal(np.array(body["predictions"], np.float32), expected["scores"])
  status, columnar, _ = http(server, "POST", "/v1/models/ranking:predict", {"inputs": columns})
  assert status == 200 and columnar == {"outputs": body["predictions"]}


# --- status and metadata -------------------------------------------------------------------

def test_model_status_is_tf_servings_json(server):
  expected = {"model_version_status": [{"version": "1", "state": "AVAILABLE",
                                        "status": {"error_code": "OK", "error_message": ""}}]}
  assert http(server, "GET", "/v1/models/toy")[:2] == (200, expected)
  assert http(server, "GET", "/v1/models/toy/versions/1")[:2] == (200, expected)


def test_metadata_is_tf_servings_json(server):
  status, body, _ = http(server, "GET", "/v1/models/toy/metadata")
  assert status == 200, body
  assert body["model_spec"] == {"name": "toy", "signature_name": "", "version": "1"}
  signatures = body["metadata"]["signature_def"]["signature_def"]
  assert {"serving_default", "recommend_with_context"} <= set(signatures)
  default = signatures["serving_default"]
  assert default["method_name"] == "tensorflow/serving/predict"
  assert default["inputs"]["user_id"]["dtype"] == "DT_STRING"
  assert default["inputs"]["user_id"]["tensor_shape"]["dim"][0]["size"] == "-1"
  assert default["outputs"]["scores"]["dtype"] == "DT_FLOAT"
  assert set(body["metadata"]) == {"signature_def"}  # a composition only for a recommender


# --- errors --------------------------------------------------------------------------------

USERS = {"instances": ["u0"]}
ERRORS = {
    "body not JSON": ("POST", "/v1/models/toy:predict", b"{nope", 400, "not valid JSON"),
    "body not an object": ("POST", "/v1/models/toy:predict", [1], 400, "a JSON object"),
    "neither instances nor inputs": ("POST", "/v1/models/toy:predict", {}, 400,
                                     "exactly one of 'instances'"),
    "both instances and inputs": ("POST", "/v1/models/toy:predict",
                                  {"instances": ["u"], "inputs": ["u"]}, 400, "exactly one"),
    "unknown signature": ("POST", "/v1/models/toy:predict",
                          {**USERS, "signature_name": "nope"}, 400,
                          'Serving signature key "nope" not found.'),
    "unknown input": ("POST", "/v1/models/toy:predict", {"instances": [{"userid": "u"}]}, 400,
                      "input tensor alias not found in signature: userid"),
    "missing input": ("POST", "/v1/models/toy:predict",
                      {"signature_name": "recommend_with_context",
                       "instances": [{"user_id": "u"}]}, 400, "Missing but required: {hour}"),
    "wrong type": ("POST", "/v1/models/toy:predict", {"instances": [1.5]}, 400,
                   "input 'user_id' expects a string"),
    "ragged": ("POST", "/v1/models/retrieval:predict",
               {"signature_name": "candidates_with_context",
                "inputs": {"user_id": [["a"], ["b", "c"]], "hour": [1], "device": ["tv"]}},
               400, "lists of different lengths"),
    "unknown model": ("POST", "/v1/models/nope:predict", USERS, 404,
                      "Servable not found for request: Latest(nope)"),
    "unknown version": ("POST", "/v1/models/toy/versions/7:predict", USERS, 404,
                        "Servable not found for request: Specific(toy, 7)"),
    "status of unknown model": ("GET", "/v1/models/nope", None, 404,
                                "Could not find any versions of model nope"),
    "status of unknown version": ("GET", "/v1/models/toy/versions/7", None, 404,
                                  "Could not find version 7 of model toy"),
    "metadata of unknown model": ("GET", "/v1/models/nope/metadata", None, 404,
                                  "Servable not found"),
    "malformed path": ("GET", "/v2/whatever", None, 404, "Malformed request: GET /v2/whatever"),
    "classify": ("POST", "/v1/models/toy:classify", USERS, 501, "not implemented"),
    "body too large": ("POST", "/v1/models/toy:predict", {"instances": ["x" * (300 << 10)]},
                       413, "at most 262,144 are accepted"),
}


@pytest.mark.parametrize("case", ERRORS)
def test_errors_are_tf_servings_json_and_http_codes(server, case):
  method, path, body, code, message = ERRORS[case]
  raw = body if isinstance(body, bytes) else None
  status, answer, _ = http(server, method, path, None if raw else body, raw=raw)
  assert status == code, answer
  assert set(answer) == {"error"} and message in answer["error"], answer
  assert http(server, "POST", "/v1/models/toy:predict", USERS)[0] == 200


def test_the_ready_file_reports_the_rest_port(model_base, tmp_path):
  import subprocess
  import sys
  from test_model_server import REPO, wait_for
  ready = tmp_path / "ready.json"
  process = subprocess.Popen(
      [sys.executable, "-m", "recsys_tfx.serving.cli_commands", "serve", "--model-base",
       str(model_base), "--port", "0", "--rest-api-port", "0", "--ready-file", str(ready)],
      cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  try:
    wait_for(lambda: ready.exists() or process.poll() is not None, "the server", timeout=120)
    info = json.loads(ready.read_text())
    assert info["rest_port"] > 0 and info["rest_port"] != info["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{info['rest_port']}/v1/models/toy",
                                timeout=RPC_TIMEOUT) as answer:
      assert json.loads(answer.read())["model_version_status"][0]["state"] == "AVAILABLE"
  finally:
    process.terminate()
    out, _ = process.communicate(timeout=30)
  assert re.search(rf"REST API on http://127.0.0.1:{info['rest_port']}\n", out), out


# --- the bearer token ----------------------------------------------------------------------

def test_the_bearer_token_guards_every_rest_path(model_base):
  served = ModelServer(model_base, port=0, poll_seconds=60, rest_port=0,
                       token="s3cret").start()
  try:
    for path in ("/v1/models/toy", "/monitoring/prometheus/metrics"):
      for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
        status, body, got = http(served, "GET", path, headers=headers)
        assert status == 401 and "bearer token" in body["error"], (path, headers)
        assert got["WWW-Authenticate"] == "Bearer"
      assert http(served, "GET", path, headers={"Authorization": "Bearer s3cret"})[0] == 200
    status, body, _ = http(served, "POST", "/v1/models/toy:predict", USERS,
                           headers={"Authorization": "Bearer s3cret"})
    assert status == 200 and len(body["predictions"]) == 1
  finally:
    served.stop(grace=1)


# --- metrics -------------------------------------------------------------------------------

_SAMPLE = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})?'
                     r' ([0-9.e+-]+|[+-]Inf|NaN)')


def _samples(text: str) -> dict:
  samples = {}
  for line in text.splitlines():
    if line.startswith("#"):
      assert re.fullmatch(r"# (HELP|TYPE) \w+ .+", line), line
      continue
    assert _SAMPLE.fullmatch(line), f"not a Prometheus sample line: {line!r}"
    name, value = line.rsplit(" ", 1)
    samples[name] = float(value)
  return samples


def test_metrics_count_grpc_and_rest_requests_and_batches(model_base):
  from recsys_tfx.serving.tf_serving_config import BatchingParameters
  served = ModelServer(model_base, port=0, poll_seconds=60, rest_port=0,
                       batching=BatchingParameters(batch_timeout_micros=0)).start()
  try:
    with grpc.insecure_channel(served.address) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      for _ in range(3):
        _grpc(stub, "toy", {"user_id": ["u0", "u1"]})
      with pytest.raises(grpc.RpcError):
        _grpc(stub, "nope", {"user_id": ["u0"]})
    for _ in range(2):
      assert http(served, "POST", "/v1/models/toy:predict", USERS)[0] == 200
    assert http(served, "POST", "/v1/models/toy:predict",
                {**USERS, "signature_name": "nope"})[0] == 400
    status, text, headers = http(served, "GET", "/monitoring/prometheus/metrics")
  finally:
    served.stop(grace=1)

  assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
  samples = _samples(text)
  toy = 'model="toy",signature="serving_default",version="1"'
  assert samples[f'recsys_serving_requests_total{{api="grpc",{toy},code="OK"}}'] == 3
  assert samples[f'recsys_serving_requests_total{{api="rest",{toy},code="OK"}}'] == 2
  assert samples['recsys_serving_requests_total{api="rest",model="toy",signature="<unknown>",'
                 'version="1",code="FAILED_PRECONDITION"}'] == 1
  assert samples['recsys_serving_requests_total{api="grpc",model="<unknown>",'
                 'signature="<unknown>",version="",code="NOT_FOUND"}'] == 1
  assert samples[f'recsys_serving_request_latency_seconds_count{{api="grpc",{toy}}}'] == 3
  assert samples[f'recsys_serving_request_latency_seconds_bucket{{api="grpc",{toy},'
                 f'le="+Inf"}}'] == 3
  assert samples[f'recsys_serving_request_latency_seconds_sum{{api="grpc",{toy}}}'] > 0
  buckets = [v for k, v in samples.items() if k.startswith(
      f'recsys_serving_request_latency_seconds_bucket{{api="rest",{toy}')]
  assert buckets == sorted(buckets) and buckets[-1] == 2  # cumulative
  assert samples[f"recsys_serving_batched_requests_total{{{toy}}}"] == 5
  assert 1 <= samples[f"recsys_serving_batches_total{{{toy}}}"] <= 5
