"""TF Serving's REST API on a second port (TF Serving's --rest_api_port, 8501 by default),
over the same models, Predictor, token and TLS as the gRPC port:

  POST /v1/models/<name>[/versions/<v>]:predict    Predict (JSON: serving/rest_json.py)
  GET  /v1/models/<name>[/versions/<v>]            model status (GetModelStatus as JSON)
  GET  /v1/models/<name>[/versions/<v>]/metadata   signature_def metadata
  GET  /monitoring/prometheus/metrics              the server's metrics (serving/metrics.py)

Errors are TF Serving's {"error": "<message>"}, the HTTP status mapped from the gRPC code
as TF Serving maps it (INVALID_ARGUMENT and FAILED_PRECONDITION: 400, NOT_FOUND: 404,
UNAVAILABLE: 503, ...), so a bad body, an unknown signature or model answer as they do
there. With a bearer token, every path (metrics included) needs the header
`Authorization: Bearer <token>` (401 otherwise). A body is at most the gRPC port's
--max-receive-message-mb (413 otherwise).

Python's standard library serves it (http.server.ThreadingHTTPServer: a thread per
connection), with TLS from the same SSLConfig when the gRPC port has one.
"""
import hmac
import json
import logging
import os
import re
import socket
import ssl
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Optional

import grpc
from google.protobuf import json_format
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     predict_pb2)

from recsys_tfx.serving import errors, metrics as metrics_lib, rest_json, security
from recsys_tfx.serving.services import (COMPOSITION, Predictor, SIGNATURE_DEF, composition,
                                         model_status, servable_for, signature_def_map)

log = logging.getLogger(__name__)

METRICS_PATH = "/monitoring/prometheus/metrics"
_MODEL_PATH = re.compile(r"/v1/models/(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]+)"
                         r"|/labels/(?P<label>[^/:]+))?(?P<rest>/metadata|:[A-Za-z]+)?")
CONNECTION_TIMEOUT_SECONDS = 30  # an idle or slow connection gives its thread back
# TF Serving's mapping (model_servers/http_server.cc, ToHTTPStatusCode).
_HTTP_STATUS = {
    grpc.StatusCode.OK: 200, grpc.StatusCode.CANCELLED: 499, grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404, grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403, grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400, grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400, grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500, grpc.StatusCode.UNAUTHENTICATED: 401,
}


def http_status(code: grpc.StatusCode) -> int:
  return _HTTP_STATUS.get(code, 500)


def ssl_context(config: security.SslConfig) -> ssl.SSLContext:
  """A server-side context for the same SSLConfig as the gRPC port. Python's ssl loads a
  key only from a file: the PEM texts are written to a private temporary directory for
  the moment of loading, then removed."""
  context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
  context.minimum_version = ssl.TLSVersion.TLSv1_2
  with tempfile.TemporaryDirectory(prefix="recsys-tls-") as private:  # mode 0700
    key, cert = os.path.join(private, "key.pem"), os.path.join(private, "cert.pem")
    for path, text in ((key, config.server_key), (cert, config.server_cert)):
      with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
        f.write(text)
    context.load_cert_chain(cert, key)
  if config.custom_ca:
    context.load_verify_locations(cadata=config.custom_ca)
  if config.client_verify:
    context.verify_mode = ssl.CERT_REQUIRED
  return context


class _HttpServer(ThreadingHTTPServer):
  daemon_threads = True
  allow_reuse_address = False  # a port in use is an error, as on the gRPC port

  def handle_error(self, request, client_address):
    # A client that goes away or fails the TLS handshake is not the server's error.
    log.debug("REST connection from %s failed", client_address, exc_info=True)


class RestServer:
  """Binds in the constructor (so a taken port fails before models load); start() serves."""

  def __init__(self, predictor: Predictor, host: str, port: int, max_body_bytes: int,
               ssl_config: Optional[security.SslConfig] = None, token: Optional[str] = None):
    self.host = host
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    handler = type("Handler", (_Handler,), {
        "predictor": predictor, "max_body_bytes": max_body_bytes,
        "expected_auth": f"Bearer {token}".encode() if token else None,
        "in_flight": _InFlight()})
    server_class = type("HttpServer", (_HttpServer,), {"address_family": family})
    try:
      self._httpd = server_class((host.strip("[]"), port), handler)
    except OSError as e:
      raise OSError(f"cannot listen on {host}:{port} for the REST API ({e.strerror}; is "
                    "the port in use?)") from None
    self._in_flight = handler.in_flight
    self.scheme = "https" if ssl_config else "http"
    if ssl_config:
      # The handshake happens in the connection's own thread (_Handler.setup), so a
      # client that stalls it does not hold up accepting others.
      self._httpd.socket = ssl_context(ssl_config).wrap_socket(
          self._httpd.socket, server_side=True, do_handshake_on_connect=False)
    self.port = self._httpd.server_address[1]
    self._thread: Optional[threading.Thread] = None

  @property
  def url(self) -> str:
    host = f"[{self.host.strip('[]')}]" if ":" in self.host else self.host
    return f"{self.scheme}://{host}:{self.port}"

  def start(self) -> "RestServer":
    self._thread = threading.Thread(target=self._httpd.serve_forever, name="rest",
                                    kwargs={"poll_interval": 0.2}, daemon=True)
    self._thread.start()
    return self

  def stop(self, grace: float) -> None:
    """Stops accepting, lets requests in progress finish (up to `grace` seconds)."""
    if self._thread is not None:
      self._httpd.shutdown()
      self._thread.join()
    self._in_flight.wait_idle(grace)
    self._httpd.server_close()


class _InFlight:

  def __init__(self):
    self._count = 0
    self._idle = threading.Condition()

  def __enter__(self):
    with self._idle:
      self._count += 1

  def __exit__(self, *_):
    with self._idle:
      self._count -= 1
      self._idle.notify_all()

  def wait_idle(self, timeout: float) -> bool:
    with self._idle:
      return self._idle.wait_for(lambda: self._count == 0, timeout)


class _Handler(BaseHTTPRequestHandler):
  protocol_version = "HTTP/1.1"  # keep-alive: every response has a Content-Length
  timeout = CONNECTION_TIMEOUT_SECONDS
  server_version = "recsys-model-server"
  # Set per server by RestServer:
  predictor: Predictor
  max_body_bytes: int
  expected_auth: Optional[bytes]
  in_flight: _InFlight

  def setup(self):
    super().setup()
    if isinstance(self.connection, ssl.SSLSocket):
      self.connection.do_handshake()

  def log_message(self, format, *args):  # noqa: A002  (http.server's signature)
    log.debug("REST %s: " + format, self.address_string(), *args)

  def do_GET(self):
    self._handle("GET")

  def do_POST(self):
    self._handle("POST")

  # --- dispatch ------------------------------------------------------------------------------

  def _handle(self, method: str) -> None:
    self._body_consumed = False
    with self.in_flight:
      try:
        if not self._authorized():
          self._send_json(401, {"error": "missing or wrong bearer token: send the header "
                                         "'Authorization: Bearer <token>' with the "
                                         "server's token"},
                          {"WWW-Authenticate": "Bearer"})
          return
        self._route(method)
      except errors.ServingError as e:
        self._send_json(http_status(e.code), {"error": e.message})
      except Exception as e:  # only this request fails
        log.exception("REST %s %s failed", method, self.path)
        self._send_json(500, {"error": f"{type(e).__name__}: {e}"})

  def _authorized(self) -> bool:
    if self.expected_auth is None:
      return True
    sent = (self.headers.get("Authorization") or "").encode("utf-8", errors="replace")
    return hmac.compare_digest(sent, self.expected_auth)

  def _route(self, method: str) -> None:
    path = self.path.split("?", 1)[0]
    if path == METRICS_PATH and method == "GET":
      text = self.predictor.metrics.exposition() if self.predictor.metrics else ""
      self._send(200, text.encode(), metrics_lib.CONTENT_TYPE)
      return
    match = _MODEL_PATH.fullmatch(path)
    rest = match and match.group("rest")
    if match and method == "POST" and rest and rest.startswith(":"):
      if rest != ":predict":
        raise errors.ServingError(grpc.StatusCode.UNIMPLEMENTED,
                                  f"{rest[1:]} is not implemented (only predict)")
      self._predict(match)
    elif match and method == "GET" and rest in (None, "/metadata"):
      spec = {"name": match.group("name"), "label": match.group("label"),
              "version": match.group("version")}
      self._metadata(spec) if rest else self._status(spec)
    else:
      self._drain()
      self._send_json(404, {"error": f"Malformed request: {method} {path}"})

  def _read_body(self) -> bytes:
    length = self.headers.get("Content-Length")
    if length is None or not length.isdigit():
      self.close_connection = True
      raise errors.invalid_argument("the request needs a Content-Length header")
    if int(length) > self.max_body_bytes:
      self.close_connection = True  # the body is not read
      self._send_json(413, {"error": f"the request body is {int(length):,} bytes; at most "
                                     f"{self.max_body_bytes:,} are accepted "
                                     "(--max-receive-message-mb)"})
      return None
    self._body_consumed = True
    return self.rfile.read(int(length))

  def _drain(self) -> None:
    """Reads (and drops) a body nobody asked for, so the connection stays usable."""
    length = self.headers.get("Content-Length")
    if length and length.isdigit() and int(length) <= self.max_body_bytes:
      self.rfile.read(int(length))
      self._body_consumed = True

  # --- the endpoints -------------------------------------------------------------------------

  def _predict(self, match) -> None:
    body = self._read_body()
    if body is None:
      return
    request = predict_pb2.PredictRequest()
    version = int(match.group("version")) if match.group("version") else None
    self._fill_spec(request.model_spec, match.group("name"), match.group("label"), version)
    form = []

    def fill(servable, request):
      parsed = rest_json.parse_body(body)
      name = rest_json.signature_name(parsed)
      signature = servable.signature_defs.get(name)
      if signature is None:  # TF Serving's status for it, as over gRPC
        raise errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                                  f'Serving signature key "{name}" not found.')
      form.append(rest_json.fill_request(request, parsed, signature))

    response = self.predictor.predict(request, "rest", fill)
    self._send_json(200, rest_json.response_body(response, form[0]))

  @staticmethod
  def _fill_spec(spec, name: str, label: Optional[str], version: Optional[int]) -> None:
    spec.name = name
    if label:
      spec.version_label = label
    elif version is not None:
      spec.version.value = version

  def _status(self, spec: dict) -> None:
    self._drain()
    request = get_model_status_pb2.GetModelStatusRequest()
    version = int(spec["version"]) if spec["version"] else None
    if spec["label"]:
      raise errors.invalid_argument(f"Unrecognized servable version label: {spec['label']}")
    self._fill_spec(request.model_spec, spec["name"], None, version)
    response = model_status(self.predictor.manager, request)
    self._send_json(200, json_format.MessageToDict(
        response, including_default_value_fields=True, preserving_proto_field_name=True))

  def _metadata(self, spec: dict) -> None:
    self._drain()
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    version = int(spec["version"]) if spec["version"] else None
    self._fill_spec(request.model_spec, spec["name"], spec["label"], version)
    servable = servable_for(self.predictor.manager, request)
    # TF Serving's JSON: the SignatureDefMap under metadata.signature_def.
    signatures = json_format.MessageToDict(
        signature_def_map(servable), including_default_value_fields=True,
        preserving_proto_field_name=True)
    metadata = {SIGNATURE_DEF: signatures}
    found = composition(servable)  # a recommender servable's (this server's addition)
    if found is not None:
      metadata[COMPOSITION] = found
    self._send_json(200, {
        "model_spec": {"name": servable.name, "signature_name": "",
                       "version": str(servable.version)},
        "metadata": metadata})

  # --- answers -------------------------------------------------------------------------------

  def _send_json(self, status: int, value: dict, headers: Optional[dict] = None) -> None:
    self._send(status, json.dumps(value).encode(), "application/json", headers)

  def _send(self, status: int, body: bytes, content_type: str,
            headers: Optional[dict] = None) -> None:
    if not self._body_consumed and self.headers.get("Content-Length", "0") != "0":
      self.close_connection = True  # an unread body would be taken for the next request
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    for key, value in (headers or {}).items():
      self.send_header(key, value)
    if self.close_connection:
      self.send_header("Connection", "close")
    self.end_headers()
    self.wfile.write(body)

