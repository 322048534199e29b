"""Warm-up records in TF Serving's format: written into a SavedModel, they parse back as
PredictionLog records and the model server replays every one of them when it loads the
version."""
import logging
import os
import shutil

import pytest
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import prediction_log_pb2

import serving_toys
from recsys_tfx.trainer import warmup
from recsys_tfx.serving.model_server import ModelServer
from recsys_tfx.schema.export_contract import WARMUP_FILE
from recsys_tfx.serving.servable import load_servable

CONTEXT = {"hour": [8, 21], "device": ["tv", "mobile"]}


@pytest.fixture(scope="module")
def toy_base(tmp_path_factory):
  return serving_toys.model_base(str(tmp_path_factory.mktemp("toys")))


@pytest.fixture
def model_base(toy_base, tmp_path):
  """A copy of the toy models, so each test writes its own warm-up files."""
  return shutil.copytree(toy_base, str(tmp_path / "models"))


def write_both(model_base: str):
  retrieval = warmup.write_warmup_requests(
      os.path.join(model_base, "retrieval", "1"), "retrieval", "recommend_with_context",
      warmup.retrieval_warmup_inputs(["u0", "u1", "u2"], CONTEXT))
  ranking = warmup.write_warmup_requests(
      os.path.join(model_base, "ranking", "1"), "ranking", "serving_default",
      warmup.ranking_warmup_inputs(["u0"], [f"i{n}" for n in range(30)], CONTEXT))
  return retrieval, ranking


def test_records_parse_back_as_prediction_logs(model_base):
  retrieval, _ = write_both(model_base)
  assert retrieval == os.path.join(model_base, "retrieval", "1", WARMUP_FILE)
  logs = warmup.read_warmup_requests(os.path.join(model_base, "retrieval", "1"))
  assert len(logs) == 4
  assert all(isinstance(log, prediction_log_pb2.PredictionLog) for log in logs)
  request = logs[0].predict_log.request
  assert (request.model_spec.name, request.model_spec.signature_name) == (
      "retrieval", "recommend_with_context")
  assert request.inputs["hour"].dtype == types_pb2.DT_INT64
  assert [len(log.predict_log.request.inputs["user_id"].string_val) for log in logs] == \
      [1, 1, 1, 8]
  unknown = logs[2].predict_log.request
  assert unknown.inputs["user_id"].string_val == [warmup.UNKNOWN_USER.encode()]

  ranking = warmup.read_warmup_requests(os.path.join(model_base, "ranking", "1"))
  assert [len(log.predict_log.request.inputs["item_id"].string_val) for log in ranking] == \
      [1, 100]


def test_the_server_replays_them_when_loading(model_base, caplog):
  write_both(model_base)
  caplog.set_level(logging.INFO)
  server = ModelServer(model_base, port=0, poll_seconds=60).start()
  server.stop(grace=1)
  assert "retrieval version 1: replayed 4 warm-up request(s)" in caplog.text
  assert "ranking version 1: replayed 2 warm-up request(s)" in caplog.text


def test_replay_runs_every_record_through_the_model(model_base):
  write_both(model_base)
  servable = load_servable("ranking", 1, os.path.join(model_base, "ranking", "1"))
  assert servable.version == 1  # loading raises if a record fails


def test_rewriting_replaces_the_file(model_base):
  path = os.path.join(model_base, "retrieval", "1")
  warmup.write_warmup_requests(path, "retrieval", "serving_default", [{"user_id": ["u0"]}])
  warmup.write_warmup_requests(path, "retrieval", "serving_default",
                               [{"user_id": ["u0"]}, {"user_id": ["u1", "u2"]}])
  assert len(warmup.read_warmup_requests(path)) == 2
  assert not os.path.exists(os.path.join(path, WARMUP_FILE) + ".tmp")


@pytest.mark.parametrize("signature, inputs_list, message", [
    ("nope", [{"user_id": ["u"]}], "has no signature 'nope'"),
    ("recommend_with_context", [{"user_id": ["u"]}], "missing ['device', 'hour']"),
    ("serving_default", [{"user_id": ["u"], "hour": [1]}], "unexpected ['hour']"),
    ("serving_default", [], "between 1 and 1000"),
])
def test_inputs_that_do_not_fit_the_signature_are_refused(model_base, signature,
                                                          inputs_list, message):
  path = os.path.join(model_base, "retrieval", "1")
  with pytest.raises(ValueError) as raised:
    warmup.write_warmup_requests(path, "retrieval", signature, inputs_list)
  assert message in str(raised.value)
  assert not os.path.exists(os.path.join(path, WARMUP_FILE))


def test_context_examples_are_the_most_frequent_known_values():
  import pandas as pd
  interactions = pd.DataFrame({"hour": [21, 21, 21, 8, 8, -1, 3],
                               "device": ["tv", "", "", "", "tv", "mobile", "tv"]})
  examples = warmup.context_examples(interactions, ["hour", "device"])
  assert examples == {"hour": [21, 8], "device": ["tv", "mobile"]}
  assert all(type(v) is int for v in examples["hour"])
  with pytest.raises(ValueError, match="'weather' is not a column"):
    warmup.context_examples(interactions, ["weather"])
