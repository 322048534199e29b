"""Server-side batching (serving/batching.py): concurrent Predict calls over a real socket
run as fewer model calls, each answer is its own, one bad request fails only itself, a
full queue answers UNAVAILABLE, and the parameters are read from TF Serving's file."""
import threading
import time
import types

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_toys
from recsys_tfx.serving import cli_commands, errors, tf_serving_config
from recsys_tfx.serving.batching import QUEUE_FULL, Batcher
from recsys_tfx.serving.model_server import ModelServer
from recsys_tfx.serving.signature_runner import PreparedPredict
from recsys_tfx.serving.tf_serving_config import BatchingParameters
from test_model_server import outputs, predict_request

RPC_TIMEOUT = 30
CLIENTS = 8
# Long enough that 8 threads released together land in one batch on a loaded machine.
WAIT_MICROS = 1_000_000


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  return serving_toys.model_base(str(tmp_path_factory.mktemp("serving_models")))


@pytest.fixture(scope="module")
def server(model_base):
  params = BatchingParameters(max_batch_size=64, batch_timeout_micros=WAIT_MICROS,
                              num_batch_threads=2, max_enqueued_batches=10)
  served = ModelServer(model_base, port=0, poll_seconds=60, batching=params).start()
  yield served
  served.stop(grace=1)


@pytest.fixture(scope="module")
def stub(server):
  with grpc.insecure_channel(server.address) as channel:
    yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _concurrently(stub, requests):
  """Sends every request at once (one thread each); returns responses or RpcErrors."""
  results = [None] * len(requests)
  start = threading.Barrier(len(requests))

  def send(i):
    start.wait()
    try:
      results[i] = stub.Predict(requests[i], timeout=RPC_TIMEOUT)
    except grpc.RpcError as e:
      results[i] = e

  threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  return results


def _context_inputs(i: int) -> dict:
  """Request i: i % 3 + 1 users of its own, its own hour, device tv for odd i."""
  rows = i % 3 + 1
  return {"user_id": [f"user{i}-{r}" for r in range(rows)],
          "hour": np.full(rows, i, np.int64), "device": ["tv" if i % 2 else "web"] * rows}


def test_concurrent_requests_run_as_fewer_model_calls_each_with_its_own_answer(
    server, stub, model_base):
  calls_before = server.batcher.model_calls
  requests = [predict_request("retrieval", _context_inputs(i),
                              signature="recommend_with_context") for i in range(CLIENTS)]
  requests[5].output_filter.append("scores")  # filters apply per request
  results = _concurrently(stub, requests)

  calls = server.batcher.model_calls - calls_before
  assert 1 <= calls < CLIENTS, f"{CLIENTS} requests took {calls} model calls"
  direct = tf.saved_model.load(f"{model_base}/retrieval/1").signatures["recommend_with_context"]
  for i, response in enumerate(results):
    assert not isinstance(response, grpc.RpcError), (i, response)
    expected = direct(**{k: tf.constant(v) for k, v in _context_inputs(i).items()})
    got = outputs(response)
    assert sorted(got) == (["scores"] if i == 5 else ["item_ids", "scores"])
    np.testing.assert_array_equal(got["scores"], expected["scores"].numpy())
    if i != 5:
      np.testing.assert_array_equal(got["item_ids"], expected["item_ids"].numpy())
    assert response.model_spec.signature_name == "recommend_with_context"
  assert server.metrics.request_count(model="retrieval", code="OK") >= CLIENTS


def _ranking_inputs(i: int, item: str = None) -> dict:
  return {"user_id": ["u"], "item_id": [item or f"i{i}"], "hour": np.array([i], np.int64),
          "device": ["tv"], "source_scores": np.zeros((1, 1), np.float32),
          "source_ranks": np.ones((1, 1), np.float32)}


def test_a_bad_request_fails_alone_and_the_rest_of_its_batch_is_answered(server, stub):
  requests = [predict_request("ranking", _ranking_inputs(i)) for i in range(CLIENTS)]
  # Refused before merging: its own INVALID_ARGUMENT.
  requests[2] = predict_request("ranking", {**_ranking_inputs(2), "hour": [2]})  # int32
  # Valid to every check, refused by the model itself ("ix" is not a number): the
  # merged call fails, and the batch is answered one request at a time.
  requests[6] = predict_request("ranking", _ranking_inputs(6, item="ix"))
  calls_before, rerun_before = server.batcher.model_calls, server.batcher.rerun_alone
  results = _concurrently(stub, requests)

  for i, result in enumerate(results):
    if i in (2, 6):
      assert isinstance(result, grpc.RpcError), i
      assert result.code() == grpc.StatusCode.INVALID_ARGUMENT, (i, result.details())
    else:
      assert not isinstance(result, grpc.RpcError), (i, result)
      expected = i / 1000 + (i + 1) * 10 + 1
      np.testing.assert_allclose(outputs(result)["scores"], [expected], rtol=1e-6)
  assert "input 'hour' has dtype DT_INT32" in results[2].details()
  assert server.batcher.model_calls - calls_before < CLIENTS - 1  # merged, 7 valid ones
  assert server.batcher.rerun_alone > rerun_before  # request 6's batch, one by one


def test_signatures_without_a_batch_dimension_run_alone(server, stub):
  calls_before = server.batcher.model_calls
  response = stub.Predict(predict_request("retrieval", {}, signature="candidate_sources"),
                          timeout=RPC_TIMEOUT)
  assert outputs(response)["sources"].tolist() == [b"toy"]
  assert server.batcher.model_calls == calls_before


# --- the batcher alone ---------------------------------------------------------------------

def _prepared(function, rows: int = 1) -> PreparedPredict:
  servable = types.SimpleNamespace(name="m", version=1)
  return PreparedPredict(servable, "m", "serving_default", function,
                         {"x": tf.constant(np.arange(rows, dtype=np.int64))}, ["y"], rows)


def test_a_full_queue_answers_unavailable_like_tf_serving():
  entered, release = threading.Event(), threading.Event()

  def slow(x):
    entered.set()
    release.wait(30)
    return {"y": x * 2}

  params = BatchingParameters(max_batch_size=1, batch_timeout_micros=0,
                              max_enqueued_batches=1, num_batch_threads=1)
  batcher = Batcher(params).start()
  shared = _prepared(slow)
  results = []
  try:
    running = threading.Thread(target=lambda: results.append(batcher.run(shared)))
    running.start()
    assert entered.wait(30)  # the only batch thread is busy
    queued = threading.Thread(target=lambda: results.append(batcher.run(shared)))
    queued.start()
    deadline = time.monotonic() + 30
    while not batcher._queues and time.monotonic() < deadline:
      time.sleep(0.01)
    with pytest.raises(errors.ServingError) as raised:  # one batch enqueued: the limit
      batcher.run(shared)
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.message == QUEUE_FULL
  finally:
    release.set()
    running.join()
    queued.join()
    batcher.stop()
  assert [r["y"].numpy().tolist() for r in results] == [[0], [0]]


def test_requests_larger_than_a_batch_run_alone():
  batcher = Batcher(BatchingParameters(max_batch_size=2)).start()
  try:
    result = batcher.run(_prepared(lambda x: {"y": x + 1}, rows=3))
  finally:
    batcher.stop()
  assert result["y"].numpy().tolist() == [1, 2, 3]
  assert batcher.model_calls == 0


# --- parameters ----------------------------------------------------------------------------

@pytest.fixture
def serving_logger_restored():
  """`serve` gives the server's logger a handler of its own and stops propagation
  (model_server.configure_logging); later tests read records through the root logger."""
  import logging
  logger = logging.getLogger("recsys_tfx.serving")
  saved = (list(logger.handlers), logger.propagate, logger.level)
  yield
  logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


def test_batching_parameters_file_round_trips(tmp_path):
  params = BatchingParameters(max_batch_size=32, batch_timeout_micros=0, num_batch_threads=2,
                              max_enqueued_batches=7)
  path = tmp_path / "batching_parameters.txt"
  path.write_text("# a comment\n" + tf_serving_config.batching_parameters_text(params))
  assert tf_serving_config.read_batching_parameters(str(path)) == params
  path.write_text("max_batch_size { value: 16 }\n")  # the rest: defaults
  assert tf_serving_config.read_batching_parameters(str(path)) == BatchingParameters(
      max_batch_size=16)


@pytest.mark.parametrize("text, message", [
    ("max_batch_size: 16\n", "not a BatchingParameters text proto"),
    ("allowed_batch_sizes: 8\n", "max_batch_size, batch_timeout_micros"),
    ("num_batch_threads { value: 0 }\n", "num_batch_threads must be an integer >= 1"),
])
def test_unusable_batching_parameters_are_refused_by_serve(tmp_path, capsys, text, message,
                                                          serving_logger_restored):
  path = tmp_path / "batching.txt"
  path.write_text(text)
  code = cli_commands.main(["serve", "--model-base", str(tmp_path), "--port", "0",
                            "--enable-batching",
                            "--batching-parameters-file", str(path)])
  assert code == 2
  err = capsys.readouterr().err
  assert str(path) in err and message in err


def test_batching_parameters_file_needs_enable_batching(tmp_path, capsys,
                                                       serving_logger_restored):
  code = cli_commands.main(["serve", "--model-base", str(tmp_path), "--port", "0",
                            "--batching-parameters-file", "x"])
  assert code == 2
  assert "only with --enable-batching" in capsys.readouterr().err
