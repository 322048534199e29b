"""A model server that speaks TF Serving's gRPC API over TF Serving's directory layout.

The real tensorflow_model_server cannot be installed on these machines, so this one
serves the same requests (PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus) from the same <model_base>/<model_name>/<version>/ tree,
and client code written for TF Serving works against it unchanged. Every model directory
under model_base is served; see serving/model_manager.py for how versions are chosen
and swapped.

    recsys serve --model-base serving_models --port 8500
    (or python -m recsys_tfx.serving.cli_commands serve ..., without the rest of `recsys`)

prints "serving retrieval v1796044043 on 127.0.0.1:8500" once it listens, and stops
cleanly (in-flight requests finish) on SIGTERM or Ctrl-C.

TF Serving's REST API and a Prometheus metrics endpoint listen on a second port
(--rest-api-port, 8501 by default; serving/rest.py), and --enable-batching merges
concurrent Predicts into one model call (serving/batching.py).

Exposure: it listens on 127.0.0.1 unless told otherwise, and warns when it listens
anywhere else without TLS. TLS (and mutual TLS) is configured as TF Serving's
--ssl_config_file; a bearer token may be required on every call (serving/security.py).
A request is at most --max-receive-message-mb; sizes inside it are checked before any
tensor is built (serving/signature_runner.py).
"""
import gc
import json
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Dict, Optional

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from recsys_tfx.serving import admission, model_files, rest, security
from recsys_tfx.serving.batching import Batcher
from recsys_tfx.serving.metrics import Metrics
from recsys_tfx.serving.model_manager import ModelManager
from recsys_tfx.serving.services import ModelService, PredictionService, Predictor
from recsys_tfx.serving.tf_serving_config import BatchingParameters

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500  # TF Serving's gRPC port
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_WORKERS = 16
SHUTDOWN_GRACE_SECONDS = 5.0

MIB = 1 << 20
# The largest request the server reads. TF Serving takes up to 2 GB, for arbitrary tensors
# (images, ...); ours are ids and context. The largest request the project's clients
# make is max_batch_size (1000) rows of a history window (trainer.history_length, 50 ids)
# at ~8 bytes an id: ~0.4 MB, so 1 MiB leaves room for ids twice as long. Why not more:
# gRPC reads and protobuf parses a whole message before any check of ours runs, and a
# message of tiny strings takes ~40x its size in memory while it is parsed and checked,
# so a 1 MiB request costs up to ~60 MB (serving/admission.py lets one such request in
# at a time), within 1.2x of a server idling at ~0.6-1.1 GB; at 4 MiB one would cost
# ~200 MB, at TF Serving's 2 GB one could take the machine. Raise it with
# --max-receive-message-mb for longer ids or larger batches.
DEFAULT_MAX_RECEIVE_MB = 1
# The largest answer: responses are the model's outputs for a bounded request (top-K
# lists, scores), except item_embeddings, the whole catalogue: 1M items x 64 floats is
# 256 MB. Never unlimited (-1).
MAX_SEND_BYTES = 512 * MIB


def grpc_options(max_receive_mb: float) -> list:
  return [
      ("grpc.max_receive_message_length", int(max_receive_mb * MIB)),
      ("grpc.max_send_message_length", MAX_SEND_BYTES),
      # gRPC shares a port between processes by default on Linux; fail instead.
      ("grpc.so_reuseport", 0),
  ]


class ModelServer:
  """The server in-process: start() loads every model and listens, stop() shuts down."""

  def __init__(self, model_base: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
               poll_seconds: float = DEFAULT_POLL_SECONDS,
               max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_workers: int = DEFAULT_WORKERS,
               max_receive_mb: float = DEFAULT_MAX_RECEIVE_MB,
               ssl_config: Optional[security.SslConfig] = None, token: Optional[str] = None,
               batching: Optional[BatchingParameters] = None, rest_port: Optional[int] = None):
    if not model_files.isdir(model_base):  # a local path or a bucket URI (gs://...)
      raise FileNotFoundError(f"model base {model_base} is not a directory (the Pusher writes "
                              "<model_base>/<model_name>/<version>/)")
    if not max_receive_mb > 0:
      raise ValueError(f"the maximum request size must be > 0 MiB, got {max_receive_mb}")
    self.host = host
    self.port = port  # the bound port once started (port 0 picks a free one)
    self.manager = ModelManager(model_base, poll_seconds)
    self._ssl_config = ssl_config
    self._token = token
    self._max_batch_size = max_batch_size
    self._max_receive_bytes = int(max_receive_mb * MIB)
    # TF Serving's REST API on a second port: None or negative, none; 0 picks a free port.
    self.rest_port = rest_port if rest_port is not None and rest_port >= 0 else None
    self.rest: Optional[rest.RestServer] = None
    self.metrics = Metrics()
    # Batching, as TF Serving's --enable_batching (serving/batching.py); None: every
    # request runs alone.
    self.batcher = Batcher(batching, self.metrics) if batching else None
    self.predictor = Predictor(self.manager, max_batch_size, self.batcher, self.metrics)
    self._executor = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="grpc")
    # The token first: a call without it is refused before its message is even parsed.
    interceptors = [security.TokenInterceptor(token)] if token else []
    interceptors.append(admission.RequestBudget(int(max_receive_mb * MIB)))
    self._server = grpc.server(self._executor, options=grpc_options(max_receive_mb),
                               interceptors=interceptors)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(self.predictor), self._server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(self.manager), self._server)

  @property
  def address(self) -> str:
    return f"{self.host}:{self.port}"

  def protection(self) -> str:
    """How calls are protected, in words: 'TLS, bearer token', 'plaintext', ..."""
    parts = [self._ssl_config.describe() if self._ssl_config else "plaintext"]
    return ", ".join(parts + (["bearer token"] if self._token else []))

  def start(self) -> "ModelServer":
    if not self._ssl_config and not security.is_loopback(self.host):
      log.warning("listening on %s without TLS: anyone who can reach it can read the "
                  "requests and answers%s; pass --ssl-config-file (and --auth-token-file), "
                  "or keep the default host 127.0.0.1", self.host,
                  "" if self._token else " and query the models")
    # Bind first, so a taken port fails before minutes of model loading.
    host = f"[{self.host}]" if ":" in self.host else self.host
    try:
      if self._ssl_config:
        bound = self._server.add_secure_port(f"{host}:{self.port}",
                                             self._ssl_config.credentials())
      else:
        bound = self._server.add_insecure_port(f"{host}:{self.port}")
    except RuntimeError:  # newer grpcio raises; older ones return 0
      bound = 0
    if not bound:
      raise OSError(f"cannot listen on {self.address} (is the port in use?)")
    self.port = bound
    if self.rest_port is not None:
      self.rest = rest.RestServer(self.predictor, self.host, self.rest_port,
                                  self._max_receive_bytes, self._ssl_config, self._token)
      self.rest_port = self.rest.port
    self.manager.start()  # the models load before the server answers, as in TF Serving
    # The loaded models are long-lived: move them out of the garbage collector's view,
    # or a full collection (~200 ms with TensorFlow loaded) stalls every request.
    gc.freeze()
    if self.batcher is not None:
      self.batcher.start()
    self._server.start()
    if self.rest is not None:
      self.rest.start()
    return self

  def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
    """Stops polling, lets in-flight requests finish (up to `grace` seconds), then returns."""
    self.manager.stop()
    if self.rest is not None:
      self.rest.stop(grace)
    self._server.stop(grace).wait()
    self._executor.shutdown(wait=True)
    if self.batcher is not None:  # after the calls that could still be waiting on it
      self.batcher.stop()


def describe(versions: Dict[str, int]) -> str:
  return ", ".join(f"{name} v{version}" for name, version in versions.items()) or "no models yet"


def _write_ready_file(path: str, server: ModelServer) -> None:
  info = {"host": server.host, "port": server.port, "rest_port": server.rest_port,
          "pid": os.getpid(), "models": server.manager.served_versions(),
          "protection": server.protection()}
  with open(path + ".tmp", "w") as f:
    json.dump(info, f)
  os.replace(path + ".tmp", path)  # readers never see half a file


class _OneLine(logging.Formatter):
  """Log lines as "time LEVEL logger: message"."""

  def __init__(self):
    super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")


def configure_logging(stream=None) -> None:
  """Sends the server's own log (every load, swap, failed load and rollback) to stderr at
  INFO, whatever else configured logging in this process.

  logging.basicConfig(level=INFO) is not enough: it does nothing once the root logger has
  a handler, and absl installs one (basicConfig(), root level WARNING) the first time
  anything logs through it before logging is configured, which importing TFX or TFMA
  does. After that every INFO line of the server was dropped. So the server's loggers get
  a handler of their own and do not depend on the root logger's level."""
  logger = logging.getLogger("recsys_tfx.serving")
  logger.setLevel(logging.INFO)
  for handler in list(logger.handlers):
    if isinstance(handler.formatter, _OneLine):
      logger.removeHandler(handler)  # configured twice: one line per record, not two
  handler = logging.StreamHandler(stream or sys.stderr)
  handler.setFormatter(_OneLine())
  logger.addHandler(handler)
  logger.propagate = False


def serve(model_base: str, ready_file: Optional[str] = None, **options) -> None:
  """Serves until SIGTERM or SIGINT; `options` are ModelServer's. When ready it prints
  "serving <models> on host:port" and, if asked, writes ready_file (JSON: host, port,
  pid, models), which is how a caller that passed port=0 learns the port. The file is
  removed on shutdown. Signals reach only the main thread: elsewhere, use ModelServer's
  start() and stop() instead."""
  server = ModelServer(model_base, **options)
  server.start()
  stopping = threading.Event()
  previous = {}
  if threading.current_thread() is threading.main_thread():  # signals reach the main thread
    for signum in (signal.SIGTERM, signal.SIGINT):
      previous[signum] = signal.signal(signum, lambda *_: stopping.set())
  try:
    print(f"serving {describe(server.manager.served_versions())} on {server.address} "
          f"({server.protection()})", flush=True)
    if server.rest is not None:
      print(f"REST API on {server.rest.url}", flush=True)
    if ready_file:
      _write_ready_file(ready_file, server)
    while not stopping.wait(0.5):
      pass
    print("shutting down", flush=True)
  finally:
    server.stop()
    for signum, handler in previous.items():
      signal.signal(signum, handler)
    if ready_file and os.path.exists(ready_file):
      os.remove(ready_file)
  print("stopped", flush=True)
