"""A stand-in for the Kubeflow Pipelines API server (REST v2beta1) for tests: http.server
on 127.0.0.1, an ephemeral port, a thread; it keeps pipelines, versions, experiments and
recurring runs in memory and records every request as it arrived over HTTP."""
import email.parser
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlparse

API = "/apis/v2beta1"


class FakeKfp:

  def __init__(self):
    self.requests = []  # dicts: method, path, query, headers, body (bytes), json, files
    self.pipelines, self.versions, self.experiments, self.recurring_runs = {}, {}, {}, {}
    self._ids = itertools.count(1)
    self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
    self.host = f"http://127.0.0.1:{self._server.server_address[1]}"
    self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._server.shutdown()
    self._server.server_close()

  def new_id(self, prefix: str) -> str:
    return f"{prefix}-{next(self._ids)}"

  def _handler(self):
    fake = self

    class Handler(BaseHTTPRequestHandler):

      def log_message(self, *args):  # keep pytest output clean
        pass

      def _serve(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        record = {"method": self.command, "path": url.path, "query": dict(parse_qsl(url.query)),
                  "headers": dict(self.headers), "body": body, "json": None, "files": {}}
        content_type = self.headers.get("Content-Type", "")
        if content_type.startswith("application/json"):
          record["json"] = json.loads(body)
        elif content_type.startswith("multipart/form-data"):
          record["files"] = _multipart(content_type, body)
        fake.requests.append(record)
        status, reply = fake.route(record)
        data = json.dumps(reply).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

      do_GET = do_POST = do_DELETE = _serve

    return Handler

  def route(self, r):
    method, path, query = r["method"], r["path"], r["query"]
    name = _filter_value(query.get("filter"))
    if (method, path) == ("GET", f"{API}/healthz"):
      return 200, {"commit_sha": "fake", "multi_user": False}
    if (method, path) == ("GET", f"{API}/pipelines"):
      return 200, {"pipelines": [p for p in self.pipelines.values()
                                 if p["display_name"] == name]}
    if (method, path) == ("POST", f"{API}/pipelines"):
      pipeline = {**r["json"], "pipeline_id": self.new_id("pipeline")}
      self.pipelines[pipeline["pipeline_id"]] = pipeline
      return 200, pipeline
    if (method, path) == ("POST", f"{API}/pipelines/upload_version"):
      if query.get("pipelineid") not in self.pipelines or "uploadfile" not in r["files"]:
        return 400, {"code": 3, "message": "bad upload"}
      version = {"pipeline_id": query["pipelineid"], "display_name": query.get("name"),
                 "pipeline_version_id": self.new_id("version")}
      self.versions[version["pipeline_version_id"]] = version
      return 200, version
    if (method, path) == ("GET", f"{API}/experiments"):
      return 200, {"experiments": [e for e in self.experiments.values()
                                   if e["display_name"] == name]}
    if (method, path) == ("POST", f"{API}/experiments"):
      experiment = {**r["json"], "experiment_id": self.new_id("experiment")}
      self.experiments[experiment["experiment_id"]] = experiment
      return 200, experiment
    if (method, path) == ("GET", f"{API}/recurringruns"):
      return 200, {"recurringRuns": [
          j for j in self.recurring_runs.values() if j["display_name"] == name
          and j["experiment_id"] == query.get("experiment_id")]}
    if (method, path) == ("POST", f"{API}/recurringruns"):
      run = {**r["json"], "recurring_run_id": self.new_id("recurring"), "status": "ENABLED"}
      self.recurring_runs[run["recurring_run_id"]] = run
      return 200, run
    if method == "DELETE" and path.startswith(f"{API}/recurringruns/"):
      if self.recurring_runs.pop(path.rsplit("/", 1)[1], None) is None:
        return 404, {"code": 5, "message": "no such recurring run"}
      return 200, {}
    return 404, {"code": 5, "message": f"no route {method} {path}"}


def _filter_value(text):
  if not text:
    return None
  return json.loads(text)["predicates"][0]["stringValue"]


def _multipart(content_type: str, body: bytes):
  message = email.parser.BytesParser().parsebytes(
      f"Content-Type: {content_type}\r\n\r\n".encode() + body)
  return {part.get_param("name", header="content-disposition"):
          (part.get_filename(), part.get_payload(decode=True)) for part in message.get_payload()}
