"""TLS, mutual TLS and the bearer token, over a real socket, with certificates made here
(a self-signed CA that signs the server's and a client's certificate)."""
import datetime
import ipaddress
import logging
import os

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import serving_toys
from recsys_tfx.serving import cli_commands, security
from recsys_tfx.serving.client import PredictionClient, RequestFailed, ServerUnavailable
from recsys_tfx.serving.model_server import ModelServer

TIMEOUT = 20


def _key():
  return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key) -> str:
  return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                           serialization.NoEncryption()).decode()


def _pem_cert(cert) -> str:
  return cert.public_bytes(serialization.Encoding.PEM).decode()


def _certificate(subject: str, key, issuer_name, issuer_key, ca: bool = False, names=()):
  now = datetime.datetime.now(datetime.timezone.utc)
  builder = (x509.CertificateBuilder()
             .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
             .issuer_name(issuer_name).public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5))
             .not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
  if names:
    builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), critical=False)
  return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
  """A CA, a server certificate for 127.0.0.1 and localhost, and a client certificate;
  PEM files under a temporary directory."""
  out = tmp_path_factory.mktemp("pki")
  ca_key = _key()
  ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "recsys test CA")])
  ca = _certificate("recsys test CA", ca_key, ca_name, ca_key, ca=True)
  server_key, client_key = _key(), _key()
  server = _certificate("localhost", server_key, ca_name, ca_key, names=(
      x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))))
  client = _certificate("a client", client_key, ca_name, ca_key)
  files = {"ca": _pem_cert(ca), "server_key": _pem_key(server_key),
           "server_cert": _pem_cert(server), "client_key": _pem_key(client_key),
           "client_cert": _pem_cert(client)}
  paths = {}
  for name, text in files.items():
    paths[name] = str(out / f"{name}.pem")
    with open(paths[name], "w") as f:
      f.write(text)
  return files, paths, out


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  return serving_toys.model_base(str(tmp_path_factory.mktemp("toy_models")))


def _ssl_config_file(pki, mutual: bool) -> str:
  files, _, out = pki
  path = str(out / ("mutual.config" if mutual else "tls.config"))
  with open(path, "w") as f:
    f.write(security.ssl_config_text(files["server_key"], files["server_cert"],
                                     files["ca"] if mutual else "", client_verify=mutual))
  return path


def _token_file(tmp_path, token: str) -> str:
  path = str(tmp_path / "token")
  with open(path, "w") as f:
    f.write(token + "\n")
  os.chmod(path, 0o600)
  return path


def _retrieve(address, **channel):
  with PredictionClient(address, timeout=TIMEOUT, **channel) as client:
    return client.retrieve("u0", {"hour": 3})


def test_tls_serves_a_client_that_trusts_the_ca_and_refuses_plaintext(model_base, pki):
  config = security.read_ssl_config(_ssl_config_file(pki, mutual=False))
  server = ModelServer(model_base, port=0, poll_seconds=60, ssl_config=config).start()
  try:
    assert server.protection() == "TLS"
    item_ids, _ = _retrieve(server.address, ca_cert=pki[1]["ca"])
    assert len(item_ids) == serving_toys.K
    with pytest.raises(ServerUnavailable):  # a plaintext client gets no answer
      _retrieve(server.address)
  finally:
    server.stop(grace=1)


def test_mutual_tls_needs_a_client_certificate_signed_by_the_custom_ca(model_base, pki):
  _, paths, _ = pki
  config = security.read_ssl_config(_ssl_config_file(pki, mutual=True))
  assert config.client_verify
  server = ModelServer(model_base, port=0, poll_seconds=60, ssl_config=config).start()
  try:
    assert server.protection() == "mutual TLS"
    item_ids, _ = _retrieve(server.address, ca_cert=paths["ca"], client_cert=paths["client_cert"],
                            client_key=paths["client_key"])
    assert len(item_ids) == serving_toys.K
    with pytest.raises(ServerUnavailable):  # TLS, but no client certificate
      _retrieve(server.address, ca_cert=paths["ca"])
  finally:
    server.stop(grace=1)


def test_bearer_token_is_required_on_every_call(model_base, pki, tmp_path):
  _, paths, _ = pki
  token = "s3cret-token"
  config = security.read_ssl_config(_ssl_config_file(pki, mutual=False))
  server = ModelServer(model_base, port=0, poll_seconds=60, ssl_config=config,
                       token=token).start()
  try:
    assert server.protection() == "TLS, bearer token"
    good = _token_file(tmp_path, token)
    assert len(_retrieve(server.address, ca_cert=paths["ca"], token_file=good)[0]) \
        == serving_toys.K
    wrong = str(tmp_path / "wrong")
    with open(wrong, "w") as f:
      f.write("not-the-token")
    for channel in ({"ca_cert": paths["ca"]}, {"ca_cert": paths["ca"], "token_file": wrong}):
      with pytest.raises(RequestFailed) as raised:
        _retrieve(server.address, **channel)
      assert raised.value.code == grpc.StatusCode.UNAUTHENTICATED
      assert "bearer token" in raised.value.details
  finally:
    server.stop(grace=1)


def _rest_predict(port: int, context=None, scheme: str = "https", token: str = ""):
  import json
  import urllib.request
  request = urllib.request.Request(
      f"{scheme}://127.0.0.1:{port}/v1/models/retrieval:predict",
      data=json.dumps({"instances": ["u0"]}).encode(), method="POST",
      headers={"Authorization": f"Bearer {token}"} if token else {})
  with urllib.request.urlopen(request, timeout=TIMEOUT, context=context) as answer:
    return json.loads(answer.read())["predictions"]


def test_rest_api_uses_the_same_mutual_tls_and_token(model_base, pki):
  import ssl
  import urllib.error
  _, paths, _ = pki
  config = security.read_ssl_config(_ssl_config_file(pki, mutual=True))
  server = ModelServer(model_base, port=0, poll_seconds=60, ssl_config=config,
                       token="s3cret", rest_port=0).start()
  try:
    assert server.rest.url == f"https://127.0.0.1:{server.rest_port}"
    client = ssl.create_default_context(cafile=paths["ca"])
    client.load_cert_chain(paths["client_cert"], paths["client_key"])
    predictions = _rest_predict(server.rest_port, client, token="s3cret")
    assert len(predictions) == 1 and len(predictions[0]["item_ids"]) == serving_toys.K
    with pytest.raises(urllib.error.HTTPError) as raised:  # TLS, no token
      _rest_predict(server.rest_port, client)
    assert raised.value.code == 401
    no_certificate = ssl.create_default_context(cafile=paths["ca"])
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
      _rest_predict(server.rest_port, no_certificate, token="s3cret")
    with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):  # plaintext
      _rest_predict(server.rest_port, scheme="http", token="s3cret")
  finally:
    server.stop(grace=1)


def test_listening_beyond_loopback_without_tls_is_warned_about(model_base, caplog):
  caplog.set_level(logging.WARNING, "recsys_tfx.serving.model_server")
  loopback = ModelServer(model_base, port=0, poll_seconds=60).start()
  loopback.stop(grace=1)
  assert loopback.host == "127.0.0.1" and not caplog.records  # the default: no warning
  exposed = ModelServer(model_base, host="0.0.0.0", port=0, poll_seconds=60).start()
  exposed.stop(grace=1)
  [record] = caplog.records
  assert "listening on 0.0.0.0 without TLS" in record.getMessage()
  assert "--ssl-config-file" in record.getMessage()


def test_serve_refuses_unusable_tls_and_token_files(model_base, tmp_path, pki, capsys,
                                                    monkeypatch):
  from recsys_tfx.serving import model_server
  monkeypatch.setattr(model_server, "configure_logging", lambda: None)  # keep pytest's
  files, _, _ = pki
  cases = {
      "missing.config": (None, "SSL config file"),
      "paths.config": ('server_key: "/etc/key.pem"\nserver_cert: "/etc/cert.pem"\n',
                       "server_key must hold the PEM text itself"),
      "verify.config": (security.ssl_config_text(files["server_key"], files["server_cert"],
                                                 client_verify=True), "client_verify needs"),
      "garbage.config": ("server_key: [1, 2]\n", "not a TF Serving SSLConfig"),
  }
  for name, (text, message) in cases.items():
    path = tmp_path / name
    if text is not None:
      path.write_text(text)
    code = cli_commands.main(["serve", "--model-base", model_base, "--port", "0",
                              "--ssl-config-file", str(path)])
    assert code == 2, name
    assert message in capsys.readouterr().err, name
  (tmp_path / "empty").write_text("\n")
  assert cli_commands.main(["serve", "--model-base", model_base, "--port", "0",
                            "--auth-token-file", str(tmp_path / "empty")]) == 2
  assert "is empty" in capsys.readouterr().err


def test_ssl_config_file_is_tf_servings_format():
  text = ('server_key: "-----BEGIN PRIVATE KEY-----\\nabc\\n-----END PRIVATE KEY-----\\n"\n'
          'server_cert: "-----BEGIN CERTIFICATE-----\\nxyz\\n-----END CERTIFICATE-----\\n"\n'
          'custom_ca: "-----BEGIN CERTIFICATE-----\\nca\\n-----END CERTIFICATE-----\\n"\n'
          'client_verify: true\n')
  message = security._ssl_config_class()()
  from google.protobuf import text_format
  text_format.Parse(text, message)
  assert message.client_verify and message.server_key.startswith("-----BEGIN PRIVATE KEY")
  assert [f.number for f in message.DESCRIPTOR.fields] == [1, 2, 3, 4]
