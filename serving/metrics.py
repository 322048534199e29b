"""Request counts, latencies and batching figures of the model server, in Prometheus's
text exposition format (version 0.0.4), written here by hand (no prometheus_client).

TF Serving exposes its metrics at GET /monitoring/prometheus/metrics on the REST port
when given a --monitoring_config_file; this server does the same (serving/rest.py):

  recsys_serving_requests_total{api,model,signature,version,code}       Predict calls
  recsys_serving_request_latency_seconds_bucket{api,model,signature,version,le}
    (and _sum, _count)                                                  Predict latency
  recsys_serving_batches_total{model,signature,version}                 merged model calls
  recsys_serving_batched_requests_total{model,signature,version}        requests in them

api is "grpc" or "rest"; code is the gRPC status name (OK, INVALID_ARGUMENT, ...). A
request for a model or signature the server does not serve is counted under model or
signature "<unknown>", so clients cannot grow the label sets without bound.
"""
import bisect
import collections
import threading
from typing import Dict, Iterable, List, Tuple

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
UNKNOWN = "<unknown>"
# Seconds: from a cached lookup (~0.5 ms) to a slow ranking of a thousand candidates.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                   2.5, 5.0, 10.0)

REQUESTS = "recsys_serving_requests_total"
LATENCY = "recsys_serving_request_latency_seconds"
BATCHES = "recsys_serving_batches_total"
BATCHED_REQUESTS = "recsys_serving_batched_requests_total"

_REQUEST_LABELS = ("api", "model", "signature", "version")
_BATCH_LABELS = ("model", "signature", "version")


class _Histogram:

  def __init__(self):
    self.counts = [0] * (len(LATENCY_BUCKETS) + 1)  # the last one is +Inf
    self.sum = 0.0

  def observe(self, value: float) -> None:
    self.counts[bisect.bisect_left(LATENCY_BUCKETS, value)] += 1
    self.sum += value


def escape(value: str) -> str:
  """A label value as the exposition format quotes it."""
  return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
  return "{" + ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values)) + "}"


def _number(value: float) -> str:
  return repr(float(value)) if isinstance(value, float) else str(value)


class Metrics:
  """Thread-safe counters and histograms; exposition() renders them."""

  def __init__(self):
    self._lock = threading.Lock()
    self._requests: Dict[Tuple, int] = collections.Counter()
    self._latency: Dict[Tuple, _Histogram] = {}
    self._batches: Dict[Tuple, int] = collections.Counter()
    self._batched: Dict[Tuple, int] = collections.Counter()

  def observe_request(self, api: str, model: str, signature: str, version: str, code: str,
                      seconds: float) -> None:
    key = (api, model, signature, version)
    with self._lock:
      self._requests[key + (code,)] += 1
      self._latency.setdefault(key, _Histogram()).observe(seconds)

  def observe_batch(self, model: str, signature: str, version: str, requests: int) -> None:
    key = (model, signature, version)
    with self._lock:
      self._batches[key] += 1
      self._batched[key] += requests

  def request_count(self, **labels) -> int:
    """Requests whose labels include `labels` (for tests and summaries)."""
    names = _REQUEST_LABELS + ("code",)
    with self._lock:
      return sum(count for key, count in self._requests.items()
                 if all(key[names.index(n)] == v for n, v in labels.items()))

  def exposition(self) -> str:
    with self._lock:
      requests = sorted(self._requests.items())
      latency = sorted((key, list(h.counts), h.sum) for key, h in self._latency.items())
      batches, batched = sorted(self._batches.items()), sorted(self._batched.items())
    lines: List[str] = [
        f"# HELP {REQUESTS} Predict requests answered, by API, model, signature, version "
        "and gRPC status code.", f"# TYPE {REQUESTS} counter"]
    lines += [f"{REQUESTS}{_labels(_REQUEST_LABELS + ('code',), key)} {count}"
              for key, count in requests]
    lines += [f"# HELP {LATENCY} Predict latency in the server, from the parsed request to "
              "the response.", f"# TYPE {LATENCY} histogram"]
    for key, counts, total in latency:
      cumulative = 0
      for bound, count in zip(LATENCY_BUCKETS + (float("inf"),), counts):
        cumulative += count
        le = "+Inf" if bound == float("inf") else repr(bound)
        lines.append(f"{LATENCY}_bucket{_labels(_REQUEST_LABELS + ('le',), key + (le,))} "
                     f"{cumulative}")
      lines.append(f"{LATENCY}_sum{_labels(_REQUEST_LABELS, key)} {_number(total)}")
      lines.append(f"{LATENCY}_count{_labels(_REQUEST_LABELS, key)} {cumulative}")
    for name, help_text, values in (
        (BATCHES, "Model calls made by the batcher (each merges one or more requests).",
         batches),
        (BATCHED_REQUESTS, "Predict requests that went through the batcher.", batched)):
      lines += [f"# HELP {name} {help_text}", f"# TYPE {name} counter"]
      lines += [f"{name}{_labels(_BATCH_LABELS, key)} {count}" for key, count in values]
    return "\n".join(lines) + "\n"
