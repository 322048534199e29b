"""The request byte budget: large requests are parsed and answered one budget at a time,
small ones never wait, a garbled message is INVALID_ARGUMENT, and a request that waits
too long is RESOURCE_EXHAUSTED."""
import threading
import time

import grpc
import pytest

from recsys_tfx.serving.admission import RequestBudget


class Aborted(Exception):
  pass


class Context:
  def __init__(self):
    self.code = None

  def abort(self, code, details):
    self.code, self.details = code, details
    raise Aborted(details)


def _handler(budget, answer, deserializer=lambda raw: raw.decode()):
  details = type("Details", (), {"method": "/tensorflow.serving.PredictionService/Predict",
                                  "invocation_metadata": ()})()
  inner = grpc.unary_unary_rpc_method_handler(answer, request_deserializer=deserializer)
  return budget.intercept_service(lambda _: inner, details)


def test_large_requests_wait_for_the_budget_small_ones_do_not():
  budget = RequestBudget(limit_bytes=1000)
  active, most = [0], {"large": 0, "small": 0}
  lock = threading.Lock()

  def answer(request, context):
    kind = "large" if len(request) > 100 else "small"
    with lock:
      active[0] += 1
      most[kind] = max(most[kind], active[0])
    time.sleep(0.05)
    with lock:
      active[0] -= 1
    return len(request)

  handler = _handler(budget, answer)
  results = []

  def in_threads(raw: bytes):
    threads = [threading.Thread(target=lambda: results.append(
        handler.unary_unary(raw, Context()))) for _ in range(4)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()

  in_threads(b"x" * 900)
  assert results == [900] * 4 and most["large"] == 1  # one at a time
  in_threads(b"x" * 10)
  assert most["small"] > 1 and budget.in_use() == 0


def test_garbled_message_is_invalid_argument_and_frees_the_budget():
  budget = RequestBudget(limit_bytes=1000)

  def parse(raw):
    from google.protobuf.message import DecodeError
    raise DecodeError("truncated")

  context = Context()
  with pytest.raises(Aborted):
    _handler(budget, lambda r, c: r, parse).unary_unary(b"\xff" * 10, context)
  assert context.code == grpc.StatusCode.INVALID_ARGUMENT and budget.in_use() == 0


def test_a_request_that_waits_too_long_is_resource_exhausted():
  budget = RequestBudget(limit_bytes=100, wait_seconds=0.1)
  release = threading.Event()
  handler = _handler(budget, lambda request, context: release.wait(5))
  holder = threading.Thread(target=handler.unary_unary, args=(b"x" * 100, Context()))
  holder.start()
  time.sleep(0.05)
  context = Context()
  with pytest.raises(Aborted):
    handler.unary_unary(b"x" * 50, context)
  release.set()
  holder.join()
  assert context.code == grpc.StatusCode.RESOURCE_EXHAUSTED and budget.in_use() == 0
