"""How much request data the server parses and answers at once: a byte budget.

gRPC hands each call's message to a worker thread, where it is parsed into protobuf
objects. Parsing costs far more than the message: a PredictRequest of tiny strings (1.3
million 1-byte values in 3.9 MB) takes ~160 MB while it is parsed and checked, ~40x its
size, before any check of ours can run. With 16 workers, 16 such requests at once would
add gigabytes. So the server parses a call only while the bytes of the calls being
handled stay within a budget (by default one maximum-size request): ordinary requests
(kilobytes) pass at once, large ones wait their turn (and get RESOURCE_EXHAUSTED if
they wait longer than WAIT_SECONDS), and the memory requests take is bounded whatever
their number.

A server interceptor does it, so every unary method is covered: it swaps each handler's
deserializer for the raw bytes and parses them itself once the budget allows.

After a large request the freed memory is handed back to the system (glibc's
malloc_trim): each worker thread allocates from its own malloc arena, which otherwise
keeps its high-water mark, so the server's footprint would grow to the sum of every
thread's largest request even though they ran one at a time.
"""
import ctypes
import ctypes.util
import functools
import threading

import grpc
from google.protobuf.message import DecodeError

WAIT_SECONDS = 30.0
TRIM_ABOVE_BYTES = 256 << 10  # requests at least this large give their memory back


@functools.lru_cache(maxsize=None)
def _malloc_trim():
  """glibc's malloc_trim, or None where there is none (musl, macOS)."""
  try:
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
  except (OSError, AttributeError):
    return None


def _without_frames(error: BaseException) -> BaseException:
  """The exception with the tracebacks of its chain dropped: they hold the frames, and so
  the parsed request, alive until gRPC has handled the exception."""
  seen = error
  while seen is not None:
    seen.__traceback__ = None
    seen = seen.__cause__ or seen.__context__
  return error


class RequestBudget(grpc.ServerInterceptor):
  """Admits calls while the bytes of the admitted ones stay within `limit_bytes`."""

  def __init__(self, limit_bytes: int, wait_seconds: float = WAIT_SECONDS):
    self._limit = limit_bytes
    self._wait = wait_seconds
    self._used = 0
    self._available = threading.Condition()

  def intercept_service(self, continuation, handler_call_details):
    handler = continuation(handler_call_details)
    if handler is None or handler.request_streaming or handler.response_streaming:
      return handler
    parse, answer = handler.request_deserializer, handler.unary_unary

    def handle(raw: bytes, context):
      try:
        request = parse(raw) if parse else raw
      except DecodeError:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"the request is not a valid {handler_call_details.method} message")
      return answer(request, context)

    def admitted(raw: bytes, context):
      size = min(len(raw), self._limit)  # gRPC refused anything above its own limit
      with self._available:
        if not self._available.wait_for(lambda: self._used + size <= self._limit,
                                        self._wait):
          context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                        f"the server is busy with large requests ({self._used:,} bytes of "
                        f"{self._limit:,} in progress); try again")
        self._used += size
      response, error = None, None
      try:
        try:
          response = handle(raw, context)
        except Exception as e:  # incl. context.abort's: re-raised below
          error = _without_frames(e)
      finally:  # by now the parsed request is gone: its memory is free to hand back
        with self._available:
          self._used -= size
          self._available.notify_all()
        if size >= TRIM_ABOVE_BYTES and _malloc_trim() is not None:
          _malloc_trim()(0)
      if error is not None:
        raise error
      return response

    return grpc.unary_unary_rpc_method_handler(
        admitted, request_deserializer=None, response_serializer=handler.response_serializer)

  def in_use(self) -> int:
    with self._available:
      return self._used
