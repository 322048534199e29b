"""Transport security and access control for the model server, and the client side of both.

TLS is configured as TF Serving's --ssl_config_file: a text-format SSLConfig proto
(tensorflow_serving/config/ssl_config.proto) holding the PEM texts themselves:

    server_key: "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----\\n"
    server_cert: "-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\\n"
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."   # optional: CA of the clients' certificates
    client_verify: true                               # optional: require a client certificate
                                                      # signed by custom_ca (mutual TLS)

so the same file configures real TF Serving. (tensorflow-serving-api does not ship the
proto's Python module; the four fields are declared here, with the same names and
numbers, and the file is parsed with protobuf's text format.)

A bearer token, read from a file, may be required on every call: the client sends the
metadata `authorization: Bearer <token>`, a server interceptor compares it in constant
time and answers UNAUTHENTICATED otherwise, before the request reaches a handler.
"""
import dataclasses
import functools
import hmac
import ipaddress
import os
from typing import Optional

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

AUTHORIZATION = "authorization"  # gRPC metadata keys are lower case
_FIELD = descriptor_pb2.FieldDescriptorProto


class SecurityConfigError(ValueError):
  """A TLS config or token file that cannot be used; the message names the file."""


@functools.lru_cache(maxsize=None)
def _ssl_config_class():
  """TF Serving's SSLConfig message, declared field for field."""
  file = descriptor_pb2.FileDescriptorProto(name="recsys_tfx/serving/ssl_config.proto",
                                            package="tensorflow.serving", syntax="proto3")
  message = file.message_type.add(name="SSLConfig")
  for number, (name, kind) in enumerate((("server_key", _FIELD.TYPE_STRING),
                                         ("server_cert", _FIELD.TYPE_STRING),
                                         ("custom_ca", _FIELD.TYPE_STRING),
                                         ("client_verify", _FIELD.TYPE_BOOL)), start=1):
    message.field.add(name=name, number=number, type=kind, label=_FIELD.LABEL_OPTIONAL)
  pool = descriptor_pool.DescriptorPool()
  pool.Add(file)
  return message_factory.MessageFactory(pool).GetPrototype(
      pool.FindMessageTypeByName("tensorflow.serving.SSLConfig"))


@dataclasses.dataclass(frozen=True)
class SslConfig:
  server_key: str
  server_cert: str
  custom_ca: str = ""
  client_verify: bool = False

  def credentials(self) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials(
        [(self.server_key.encode(), self.server_cert.encode())],
        root_certificates=self.custom_ca.encode() or None,
        require_client_auth=self.client_verify)

  def describe(self) -> str:
    return "mutual TLS" if self.client_verify else "TLS"


def _pem(path: str, field: str, value: str, kind: str) -> str:
  if f"{kind}-----" not in value:  # "-----BEGIN [RSA |EC ]PRIVATE KEY-----", "...CERTIFICATE-----"
    raise SecurityConfigError(f"{path}: {field} must hold the PEM text itself (a line "
                              f"'-----BEGIN ...{kind}-----'), as in TF Serving's SSLConfig; "
                              f"got {value[:40]!r}")
  return value


def read_ssl_config(path: str) -> SslConfig:
  """Parses a TF Serving SSLConfig file; SecurityConfigError names what is wrong."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise SecurityConfigError(f"SSL config file {path}: {e.strerror}") from None
  message = _ssl_config_class()()
  try:
    text_format.Parse(text, message)
  except text_format.ParseError as e:
    raise SecurityConfigError(f"{path}: not a TF Serving SSLConfig text proto "
                              f"(fields server_key, server_cert, custom_ca, client_verify): "
                              f"{e}") from None
  if not message.server_key or not message.server_cert:
    raise SecurityConfigError(f"{path}: server_key and server_cert are required")
  if message.client_verify and not message.custom_ca:
    raise SecurityConfigError(f"{path}: client_verify needs custom_ca, the CA that signs the "
                              "clients' certificates")
  return SslConfig(_pem(path, "server_key", message.server_key, "PRIVATE KEY"),
                   _pem(path, "server_cert", message.server_cert, "CERTIFICATE"),
                   _pem(path, "custom_ca", message.custom_ca, "CERTIFICATE")
                   if message.custom_ca else "",
                   bool(message.client_verify))


def ssl_config_text(server_key: str, server_cert: str, custom_ca: str = "",
                    client_verify: bool = False) -> str:
  """The text of an SSLConfig file for these PEM texts (for tests and set-up scripts)."""
  message = _ssl_config_class()(server_key=server_key, server_cert=server_cert,
                                custom_ca=custom_ca, client_verify=client_verify)
  return text_format.MessageToString(message)


def read_token(path: str) -> str:
  """The bearer token in a file (surrounding whitespace and a final newline ignored)."""
  try:
    with open(path) as f:
      token = f.read().strip()
  except OSError as e:
    raise SecurityConfigError(f"token file {path}: {e.strerror}") from None
  if not token:
    raise SecurityConfigError(f"token file {path} is empty")
  if any(c.isspace() or not c.isprintable() for c in token):
    raise SecurityConfigError(f"token file {path}: the token must be one line of printable "
                              "characters without spaces (it goes into an HTTP/2 header)")
  return token


def is_loopback(host: str) -> bool:
  if host.strip("[]").lower() == "localhost":
    return True
  try:
    return ipaddress.ip_address(host.strip("[]")).is_loopback
  except ValueError:
    return False  # a host name: assume it is reachable from elsewhere


class TokenInterceptor(grpc.ServerInterceptor):
  """Lets a call through only with the metadata `authorization: Bearer <token>`."""

  def __init__(self, token: str):
    self._expected = f"Bearer {token}".encode()

    def deny(request, context):
      context.abort(grpc.StatusCode.UNAUTHENTICATED,
                    "missing or wrong bearer token: send the metadata "
                    f"'{AUTHORIZATION}: Bearer <token>' with the server's token")

    self._deny = grpc.unary_unary_rpc_method_handler(deny)

  def intercept_service(self, continuation, handler_call_details):
    for key, value in handler_call_details.invocation_metadata or ():
      if key == AUTHORIZATION:
        sent = value if isinstance(value, bytes) else value.encode()
        if hmac.compare_digest(sent, self._expected):
          return continuation(handler_call_details)
    return self._deny


class _TokenCallCredentials(grpc.UnaryUnaryClientInterceptor):
  """Adds the bearer token to every call of a client channel (TLS or not)."""

  def __init__(self, token: str):
    self._metadata = (AUTHORIZATION, f"Bearer {token}")

  def intercept_unary_unary(self, continuation, client_call_details, request):
    metadata = list(client_call_details.metadata or []) + [self._metadata]
    # grpc's call details are a namedtuple
    return continuation(client_call_details._replace(metadata=metadata), request)


def _read_file(path: Optional[str], what: str) -> Optional[bytes]:
  if not path:
    return None
  try:
    with open(path, "rb") as f:
      return f.read()
  except OSError as e:
    raise SecurityConfigError(f"{what} {path}: {e.strerror}") from None


def client_channel(target: str, options, ca_cert: Optional[str] = None,
                   client_cert: Optional[str] = None, client_key: Optional[str] = None,
                   token_file: Optional[str] = None) -> grpc.Channel:
  """A channel to a model server: TLS when a CA certificate file is given (the CA that
  signed the server's certificate; with client_cert and client_key, mutual TLS), and the
  bearer token from token_file on every call."""
  if (client_cert is None) != (client_key is None):
    raise SecurityConfigError("a client certificate needs its key, and the key its "
                              "certificate (pass both)")
  if client_cert and not ca_cert:
    raise SecurityConfigError("a client certificate is only sent over TLS: pass the CA "
                              "certificate that signed the server's certificate too")
  if ca_cert:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read_file(ca_cert, "CA certificate"),
        private_key=_read_file(client_key, "client key"),
        certificate_chain=_read_file(client_cert, "client certificate"))
    channel = grpc.secure_channel(target, credentials, options=options)
  else:
    channel = grpc.insecure_channel(target, options=options)
  if token_file:
    channel = grpc.intercept_channel(channel, _TokenCallCredentials(read_token(token_file)))
  return channel


def token_file_is_private(path: str) -> bool:
  """Whether only the owner may read the token file (a token others can read is no secret)."""
  return not os.stat(path).st_mode & 0o077
