"""A small client for the Kubeflow Pipelines REST API, v2beta1, over `requests`.

The official SDK is not used: kfp 2.x requires protobuf >= 4 and this stack pins protobuf
3.20.3 (TFX 1.16); its generated kfp-server-api would be a new dependency for the few
calls below. Endpoints and message shapes follow kubeflow/pipelines
backend/api/v2beta1/{pipeline,experiment,recurring_run,filter}.proto (the google.api.http
routes) and the multipart upload routes registered in
backend/src/apiserver/main.go (/apis/v2beta1/pipelines/upload_version, form field
`uploadfile`, query `pipelineid`, `name`, `display_name`, `description`), which is also
what kfp's Client.upload_pipeline_version sends. The gateway answers with proto field
names (pipeline_id, ...); camelCase is accepted too.

Two transports: HttpTransport sends; DryRunTransport prints each request and invents
the answers (ids shown as <pipeline_id> ...), so a dry run walks the same code path.

A host may carry credentials (http://user:password@host:8080, sent as HTTP basic auth);
whatever is printed, in a dry run, a result or an error, shows them as ***:*** (`redact`).
"""
import dataclasses
import hashlib
import json
import re
import sys
from typing import Any, Dict, List, Optional, TextIO, Tuple
from urllib.parse import urlencode, urlparse

API = "/apis/v2beta1"


class KfpError(RuntimeError):
  pass


@dataclasses.dataclass
class Request:
  method: str
  path: str
  params: Dict[str, str] = dataclasses.field(default_factory=dict)
  body: Optional[Dict[str, Any]] = None  # JSON
  upload: Optional[Tuple[str, bytes, str]] = None  # multipart `uploadfile`: name, data, type

  def url(self, host: str) -> str:
    query = f"?{urlencode(self.params)}" if self.params else ""
    return f"{host}{self.path}{query}"


_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*://)?)([^/@\s]*)@")


def redact(url: str) -> str:
  """The URL with any user:password in it shown as ***:***."""
  return _USERINFO.sub(r"\1***:***@", url, count=1)


def redact_text(text: str, host: str) -> str:
  """`text` with the host's credentials masked wherever they appear: the user:password
  before its @, and the password alone (a server may echo it)."""
  found = _USERINFO.match(host)
  if not found or not found.group(2):
    return text
  userinfo = found.group(2)
  text = text.replace(userinfo + "@", "***:***@")
  password = userinfo.split(":", 1)[1] if ":" in userinfo else ""
  return text.replace(password, "***") if password else text


def check_host(host: str) -> str:
  parsed = urlparse(host)
  if parsed.scheme not in ("http", "https") or not parsed.netloc:
    raise KfpError(f"--host '{redact(host)}' is not an http(s) URL, e.g. "
                   "http://localhost:8080")
  return host.rstrip("/")


class HttpTransport:

  def __init__(self, host: str, token: Optional[str] = None, timeout: float = 30.0):
    import requests  # imported here so --dry-run and tests of the planner need no network
    self.host, self.timeout = check_host(host), timeout  # with credentials: sent as basic auth
    self.shown = redact(self.host)
    self.session = requests.Session()
    if token:
      self.session.headers["Authorization"] = f"Bearer {token}"

  def send(self, request: Request) -> Dict[str, Any]:
    import requests
    files = None
    if request.upload:
      files = {"uploadfile": request.upload}
    try:
      response = self.session.request(
          request.method, request.url(self.host), json=request.body, files=files,
          timeout=self.timeout)
    except requests.exceptions.RequestException as e:
      raise KfpError(redact_text(f"cannot reach Kubeflow Pipelines at {self.shown}: "
                                 f"{_reason(e)}", self.host)) from None
    if not response.ok:
      raise KfpError(redact_text(
          f"{request.method} {request.url(self.shown)} failed with HTTP "
          f"{response.status_code}: {_one_line(_error_message(response))}", self.host))
    try:
      return response.json() if response.content.strip() else {}
    except ValueError:  # e.g. an auth proxy's login page instead of the API
      raise KfpError(f"{request.method} {request.url(self.shown)} answered with non-JSON "
                     f"({response.headers.get('Content-Type', '?')}); is --host the KFP "
                     f"API endpoint, and does it need a token (${{KFP_TOKEN}})?") from None


def _reason(error: Exception) -> str:
  """'Connection refused' rather than urllib3's nested retry message."""
  found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
  return found.group(1).strip() if found else f"{type(error).__name__}: {_one_line(error)}"


def _error_message(response) -> str:
  try:  # google.rpc.Status: {"code", "message", "details"}
    return response.json().get("message") or response.text
  except ValueError:
    return response.text


def _one_line(value: Any) -> str:
  return " ".join(str(value).split())[:300]


class DryRunTransport:
  """Prints requests instead of sending them; lookups find nothing, creations return
  placeholder ids, so the plan shown is the one for a first schedule."""

  def __init__(self, host: str, out: Optional[TextIO] = None, token: Optional[str] = None):
    self.host, self.out, self.token = redact(check_host(host)), out or sys.stdout, token

  def send(self, request: Request) -> Dict[str, Any]:
    print(f"{request.method} {request.url(self.host)}", file=self.out)
    if self.token:
      print("Authorization: Bearer <token>", file=self.out)
    if request.body is not None:
      print("Content-Type: application/json\n", file=self.out)
      print(json.dumps(request.body, indent=2, sort_keys=True), file=self.out)
    if request.upload:
      name, data, content_type = request.upload
      print("Content-Type: multipart/form-data\n", file=self.out)
      print(f"uploadfile: {name} ({content_type}, {len(data)} bytes, sha256 "
            f"{hashlib.sha256(data).hexdigest()[:16]}...; `recsys kubeflow compile` "
            f"writes the same spec)", file=self.out)
    print(file=self.out)
    return _PLACEHOLDERS if request.method == "POST" else {}


# What a dry run pretends every creation returned (lookups return nothing).
_PLACEHOLDERS = {name: f"<{name}>" for name in (
    "pipeline_id", "pipeline_version_id", "experiment_id", "recurring_run_id")}


def field(message: Dict[str, Any], name: str) -> Any:
  """A response field by its proto name or its camelCase JSON name."""
  if name in message:
    return message[name]
  head, *rest = name.split("_")
  return message.get(head + "".join(w.title() for w in rest))


def equals_filter(key: str, value: str) -> str:
  """A JSON-serialized v2beta1 Filter (backend/api/v2beta1/filter.proto), as kfp's
  Client.get_pipeline_id builds it."""
  return json.dumps({"predicates": [
      {"key": key, "operation": "EQUALS", "stringValue": value}]})


class KfpClient:

  def __init__(self, transport):
    self.transport = transport

  def healthz(self) -> Dict[str, Any]:
    return self.transport.send(Request("GET", f"{API}/healthz"))

  def find_pipeline(self, name: str, namespace: str = "") -> Optional[str]:
    params = {"filter": equals_filter("display_name", name), **_ns(namespace)}
    found = field(self.transport.send(Request("GET", f"{API}/pipelines", params)),
                  "pipelines") or []
    return field(found[0], "pipeline_id") if found else None

  def create_pipeline(self, name: str, description: str, namespace: str = "") -> str:
    body = {"display_name": name, "description": description, **_ns(namespace)}
    return field(self.transport.send(Request("POST", f"{API}/pipelines", body=body)),
                 "pipeline_id")

  def upload_version(self, pipeline_id: str, version: str, description: str,
                     spec_file: Tuple[str, bytes, str]) -> str:
    params = {"pipelineid": pipeline_id, "name": version, "display_name": version,
              "description": description}
    reply = self.transport.send(Request("POST", f"{API}/pipelines/upload_version", params,
                                        upload=spec_file))
    return field(reply, "pipeline_version_id")

  def find_experiment(self, name: str, namespace: str = "") -> Optional[str]:
    params = {"filter": equals_filter("display_name", name), **_ns(namespace)}
    found = field(self.transport.send(Request("GET", f"{API}/experiments", params)),
                  "experiments") or []
    return field(found[0], "experiment_id") if found else None

  def create_experiment(self, name: str, namespace: str = "") -> str:
    body = {"display_name": name, **_ns(namespace)}
    return field(self.transport.send(Request("POST", f"{API}/experiments", body=body)),
                 "experiment_id")

  def find_recurring_runs(self, name: str, experiment_id: str,
                          namespace: str = "") -> List[str]:
    params = {"filter": equals_filter("display_name", name), "experiment_id": experiment_id,
              **_ns(namespace)}
    reply = self.transport.send(Request("GET", f"{API}/recurringruns", params))
    runs = field(reply, "recurringRuns") or field(reply, "recurring_runs") or []
    return [field(r, "recurring_run_id") for r in runs]

  def create_recurring_run(self, body: Dict[str, Any]) -> str:
    reply = self.transport.send(Request("POST", f"{API}/recurringruns", body=body))
    return field(reply, "recurring_run_id")

  def delete_recurring_run(self, recurring_run_id: str) -> None:
    self.transport.send(Request("DELETE", f"{API}/recurringruns/{recurring_run_id}"))


def _ns(namespace: str) -> Dict[str, str]:
  return {"namespace": namespace} if namespace else {}
