"""A model server that speaks TF Serving's gRPC API over TF Serving's directory layout.

The real tensorflow_model_server cannot be installed on these machines, so this one
serves the same requests (PredictionService.Predict and GetModelMetadata,
ModelService.GetModelStatus) from the same <model_base>/<model_name>/<version>/ tree,
and client code written for TF Serving works against it unchanged. Every model directory
under model_base is served; see serving/model_manager.py for how versions are chosen
and swapped.

    python -m serving.model_server --model-base serving_models --port 8500

prints "serving retrieval v1796044043 on 127.0.0.1:8500" once it listens, and stops
cleanly (in-flight requests finish) on SIGTERM or Ctrl-C.
"""
import argparse
import gc
import json
import logging
import os
import signal
import sys
import threading
from concurrent import futures
from typing import Dict, Optional, Sequence

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from recsys_tfx.serving.model_manager import ModelManager
from recsys_tfx.serving.services import ModelService, PredictionService

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8500  # TF Serving's gRPC port
DEFAULT_POLL_SECONDS = 2.0
DEFAULT_MAX_BATCH_SIZE = 1000
DEFAULT_WORKERS = 16
SHUTDOWN_GRACE_SECONDS = 5.0

_GRPC_OPTIONS = [
    # TF Serving takes and sends messages of any size (item_embeddings() is N x D floats).
    ("grpc.max_receive_message_length", -1),
    ("grpc.max_send_message_length", -1),
    # gRPC shares a port between processes by default on Linux; fail instead.
    ("grpc.so_reuseport", 0),
]


class ModelServer:
  """The server in-process: start() loads every model and listens, stop() shuts down."""

  def __init__(self, model_base: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
               poll_seconds: float = DEFAULT_POLL_SECONDS,
               max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_workers: int = DEFAULT_WORKERS):
    if not os.path.isdir(model_base):
      raise FileNotFoundError(f"model base {model_base} is not a directory (the Pusher writes "
                              "<model_base>/<model_name>/<version>/)")
    self.host = host
    self.port = port  # the bound port once started (port 0 picks a free one)
    self.manager = ModelManager(model_base, poll_seconds)
    self._max_batch_size = max_batch_size
    self._executor = futures.ThreadPoolExecutor(max_workers, thread_name_prefix="grpc")
    self._server = grpc.server(self._executor, options=_GRPC_OPTIONS)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
        PredictionService(self.manager, max_batch_size), self._server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(
        ModelService(self.manager), self._server)

  @property
  def address(self) -> str:
    return f"{self.host}:{self.port}"

  def start(self) -> "ModelServer":
    # Bind first, so a taken port fails before minutes of model loading.
    host = f"[{self.host}]" if ":" in self.host else self.host
    try:
      bound = self._server.add_insecure_port(f"{host}:{self.port}")
    except RuntimeError:  # newer grpcio raises; older ones return 0
      bound = 0
    if not bound:
      raise OSError(f"cannot listen on {self.address} (is the port in use?)")
    self.port = bound
    self.manager.start()  # the models load before the server answers, as in TF Serving
    # The loaded models are long-lived: move them out of the garbage collector's view,
    # or a full collection (~200 ms with TensorFlow loaded) stalls every request.
    gc.freeze()
    self._server.start()
    return self

  def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
    """Stops polling, lets in-flight requests finish (up to `grace` seconds), then returns."""
    self.manager.stop()
    self._server.stop(grace).wait()
    self._executor.shutdown(wait=True)


def describe(versions: Dict[str, int]) -> str:
  return ", ".join(f"{name} v{version}" for name, version in versions.items()) or "no models yet"


def _write_ready_file(path: str, server: ModelServer) -> None:
  info = {"host": server.host, "port": server.port, "pid": os.getpid(),
          "models": server.manager.served_versions()}
  with open(path + ".tmp", "w") as f:
    json.dump(info, f)
  os.replace(path + ".tmp", path)  # readers never see half a file


def serve(model_base: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          poll_seconds: float = DEFAULT_POLL_SECONDS,
          max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, ready_file: Optional[str] = None,
          max_workers: int = DEFAULT_WORKERS) -> None:
  """Serves until SIGTERM or SIGINT. When ready it prints "serving <models> on host:port"
  and, if asked, writes ready_file (JSON: host, port, pid, models), which is how a caller
  that passed port=0 learns the port. The file is removed on shutdown. Signals reach only
  the main thread: elsewhere, use ModelServer's start() and stop() instead."""
  server = ModelServer(model_base, host, port, poll_seconds, max_batch_size, max_workers)
  server.start()
  stopping = threading.Event()
  previous = {}
  if threading.current_thread() is threading.main_thread():  # signals reach the main thread
    for signum in (signal.SIGTERM, signal.SIGINT):
      previous[signum] = signal.signal(signum, lambda *_: stopping.set())
  try:
    print(f"serving {describe(server.manager.served_versions())} on {server.address}",
          flush=True)
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


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      prog="python -m serving.model_server",
      description="Serve <model_base>/<model_name>/<version>/ SavedModels over TF Serving's "
                  "gRPC API (Predict, GetModelMetadata, GetModelStatus).")
  parser.add_argument("--model-base", required=True,
                      help="directory holding one sub-directory per model")
  parser.add_argument("--host", default=DEFAULT_HOST)
  parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
  parser.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS,
                      help="how often to look for new versions")
  parser.add_argument("--max-batch-size", type=int, default=DEFAULT_MAX_BATCH_SIZE,
                      help="largest batch a request may send")
  parser.add_argument("--max-workers", type=int, default=DEFAULT_WORKERS,
                      help="threads answering requests")
  parser.add_argument("--ready-file", help="write host/port/models here (JSON) when ready")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  args = parse_args(argv)
  logging.basicConfig(level=logging.INFO,
                      format="%(asctime)s %(levelname)s %(name)s: %(message)s")
  try:
    serve(args.model_base, args.host, args.port, args.poll_seconds, args.max_batch_size,
          args.ready_file, args.max_workers)
  except OSError as e:  # no model base, port taken
    print(f"error: {e}", file=sys.stderr)
    return 1
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
