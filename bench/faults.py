"""Fault injection (issue #16): the faults a new user and an attacker tried, run again
against the real thing, with the figures the issue asks for.

    python bench/faults.py [--only swaps,requests,inputs,runs] [--json out.json]

  swaps     Predicts sent without pause (4 client threads) to a `recsys serve` process
            while versions arrive: pushed by the pipeline's pusher, a pushed version
            copied in by hand slowly (its marker first, its vocabulary written up to a line
            boundary for several polls), a version without a marker copied in slowly, a
            copy that stops half way, a broken version, the live version deleted. Counted:
            failures (any RPC error) and wrong answers (a known user answered as unknown,
            i.e. a half-copied vocabulary, or a version answering that never was complete).
            Target 0 and 0. One more row shows the limit of versions without a marker.
  requests  hostile and oversized Predicts (declared shapes far beyond what they carry,
            overflowing and negative dimensions, over-limit messages), one at a time and 8
            at once; the server's peak resident memory (VmHWM, reset first) over its idle
            RSS. Target < 1.2x, every hostile request refused.
  inputs    bad input files given to `recsys run`: how many started a pipeline. Target 0.
  runs      SIGKILLs injected into one small `recsys run` (in Transform, RetrievalTrainer,
            RetrievalValidator), each followed by the same command again: whether every
            rerun reused every component that had finished and the last one completed,
            with nothing left RUNNING in ML Metadata. Target: all.

Prints a markdown table (README's "Reliability" section holds the latest).
"""
import argparse
import contextlib
import importlib.util
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, List

from recsys_tfx import env

env.configure()  # a script is an entry point: set before TensorFlow loads

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tests"))  # the test helpers: toy models, small runs

POLL = 0.5  # the server's poll interval here (default 2 s): scenarios take less time
CLIENTS = 4
BATCH = 8
SECTIONS = ("swaps", "requests", "inputs", "runs")


def _load_script(name: str):
  spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, "bench", f"{name}.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _row(fault: str, tried: str, bad: str, target: str, ok: bool, detail: str = "") -> Dict:
  return {"fault": fault, "tried": tried, "result": bad, "target": target,
          "met": "yes" if ok else "NO", "detail": detail}


# --- swaps -----------------------------------------------------------------------------------

class Traffic:
  """Client threads sending Predicts to model `vocab` without pause; every answer is
  checked: each known user must get its own line of the vocabulary."""

  def __init__(self, target: str, users: List[str]):
    import grpc
    from tensorflow_serving.apis import prediction_service_pb2_grpc
    self.asked = users[:BATCH // 2] + users[-BATCH // 2:]  # both sides of a half-way cut
    self.expected = [users.index(u) for u in self.asked]
    self._channel = grpc.insecure_channel(target)
    self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self.answers, self.failures, self.wrong = [], [], []
    self.bad_versions = set()  # versions that never were complete
    self._stop = threading.Event()
    self._threads = [threading.Thread(target=self._loop) for _ in range(CLIENTS)]

  def _loop(self):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "vocab"
    request.inputs["user_id"].CopyFrom(tf.make_tensor_proto(self.asked))
    while not self._stop.is_set():
      try:
        response = self._stub.Predict(request, timeout=30)
      except grpc.RpcError as e:
        self.failures.append((time.monotonic(), f"{e.code()}: {e.details()}"))
        continue
      version = response.model_spec.version.value
      got = list(response.outputs["user_index"].int64_val)
      if got != self.expected or version in self.bad_versions:
        self.wrong.append((time.monotonic(), version))
      self.answers.append((time.monotonic(), version))

  def __enter__(self):
    for thread in self._threads:
      thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    for thread in self._threads:
      thread.join()
    self._channel.close()

  def serving(self) -> int:
    return self.answers[-1][1] if self.answers else -1

  def window(self, since: float):
    return (sum(1 for t, _ in self.answers if t >= since) +
            sum(1 for t, _ in self.failures if t >= since),
            sum(1 for t, _ in self.failures if t >= since),
            sum(1 for t, _ in self.wrong if t >= since))


def _wait(condition, timeout: float = 120) -> bool:
  deadline = time.monotonic() + timeout
  while time.monotonic() < deadline:
    if condition():
      return True
    time.sleep(0.05)
  return False


def run_swaps(work: str) -> List[Dict]:
  import serving_toys
  from recsys_tfx.components.atomic_pusher.executor import push_version
  from recsys_tfx.schema import push_manifest
  serving_bench = _load_script("serving")
  base, sources = os.path.join(work, "models"), os.path.join(work, "sources")
  model_dir = os.path.join(base, "vocab")

  def source(version: int, marked: bool = True) -> str:
    path = os.path.join(sources, str(version))
    serving_toys.save_vocab_toy(path, version)
    if marked:
      push_manifest.write_marker(path)
    return path

  push_version(source(1), model_dir, "1")
  server, target = serving_bench.start_server(
      base, os.path.join(work, "server.log"), 16, ["--poll-seconds", str(POLL)])
  rows = []
  try:
    with Traffic(target, serving_toys.vocab_users()) as traffic:
      _wait(lambda: traffic.serving() == 1)

      def scenario(name: str, action, expect: int, settle_polls: int = 0, target0=True):
        start = time.monotonic()
        action()
        reached = _wait(lambda: traffic.serving() == expect)
        time.sleep(settle_polls * POLL)
        sent, failed, wrong = traffic.window(start)
        ok = reached and failed == 0 and (wrong == 0 or not target0)
        row = _row(f"swap: {name}", f"{sent:,} requests", f"{failed} failed, {wrong} wrong",
                   "0 / 0" if target0 else "(limit)", ok,
                   f"then serving version {traffic.serving()}")
        if not target0:
          row["met"] = "n/a" if ok else "NO"  # shown, not judged: it must still end well
        rows.append(row)

      scenario("pushed by the pipeline (staged, marked, renamed)",
               lambda: push_version(source(2), model_dir, "2"), 2, settle_polls=2)
      scenario("pushed version copied in by hand, slowly: marker first, vocabulary half "
               "written for 3 polls", lambda: serving_toys.copy_in_failure_order(
                   source(3), os.path.join(model_dir, "3"), pause=3 * POLL), 3,
               settle_polls=2)
      scenario("version without a marker copied in slowly (changing between polls)",
               lambda: serving_toys.copy_in_failure_order(
                   source(4, marked=False), os.path.join(model_dir, "4"), pause=POLL / 5), 4,
               settle_polls=2)

      class Stop(Exception):
        pass

      def stop_half_way(step):
        if "up to line" in step:
          raise Stop()

      def partial_copy():
        traffic.bad_versions.add(5)
        with contextlib.suppress(Stop):
          serving_toys.copy_in_failure_order(source(5), os.path.join(model_dir, "5"),
                                             pause=0, on_step=stop_half_way)

      scenario("pushed version whose copy stops half way (vocabulary cut at a line)",
               partial_copy, 4, settle_polls=8)
      shutil.rmtree(os.path.join(model_dir, "5"))

      def broken():
        traffic.bad_versions.add(6)
        path = os.path.join(model_dir, ".6")
        os.makedirs(path)
        with open(os.path.join(path, "saved_model.pb"), "wb") as f:
          f.write(b"\x08\x96\x01 not a SavedModel")
        push_manifest.write_marker(path)
        os.rename(path, os.path.join(model_dir, "6"))

      scenario("broken version (complete, but not a SavedModel)", broken, 4, settle_polls=6)
      shutil.rmtree(os.path.join(model_dir, "6"))
      scenario("live version deleted: rollback", lambda: shutil.rmtree(
          os.path.join(model_dir, "4")), 3, settle_polls=2)
      scenario("limit: version without a marker whose copy pauses 4 polls mid-vocabulary "
               "(loaded too early, reloaded when complete)",
               lambda: serving_toys.copy_in_failure_order(
                   source(7, marked=False), os.path.join(model_dir, "7"), pause=4 * POLL), 7,
               settle_polls=4, target0=False)
  finally:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
  return rows


# --- requests --------------------------------------------------------------------------------

def hostile_requests(max_receive_bytes: int):
  """name -> PredictRequest, each one the server must refuse."""
  import tensorflow as tf
  from tensorflow.core.framework import types_pb2
  from tensorflow_serving.apis import predict_pb2

  def request(**inputs):
    r = predict_pb2.PredictRequest()
    r.model_spec.name = "vocab"
    for name, proto in inputs.items():
      r.inputs[name].CopyFrom(proto)
    return r

  import serving_toys
  declared = serving_toys.declared_tensor

  tiny = (max_receive_bytes - 1024) // 3  # each 1-byte string takes 3 bytes on the wire
  unknown_rank = declared([])
  unknown_rank.tensor_shape.unknown_rank = True
  return {
      "41 bytes declaring 10^8 strings": request(user_id=declared([100_000_000])),
      "[1, 2^62, 2^62]: dimensions overflowing int64": request(
          user_id=declared([1, 2 ** 62, 2 ** 62])),
      "a negative dimension": request(user_id=declared([-1])),
      "one value filling [1000, 100000]": request(user_id=declared([1000, 100_000])),
      f"[1000] declared, {tiny:,} 1-byte strings sent (just under the size limit)": request(
          user_id=declared([1000], [b"u"] * tiny)),
      "int64 tensor_content of 7 bytes": request(user_id=declared(
          [1], content=b"\0" * 7, dtype=types_pb2.DT_INT64)),
      "unknown rank": request(user_id=unknown_rank),
      "1000 inputs the signature lacks": request(**{f"x{i}": declared([1]) for i in range(1000)}),
      "a request 1 KiB over the size limit": request(
          user_id=tf.make_tensor_proto(["x" * (max_receive_bytes + 1024)])),
      "60 MiB request": request(user_id=tf.make_tensor_proto(["x" * (60 << 20)])),
  }


def run_requests(work: str) -> List[Dict]:
  import grpc
  import serving_toys
  from tensorflow_serving.apis import prediction_service_pb2_grpc
  from recsys_tfx.components.atomic_pusher.executor import push_version
  from recsys_tfx.schema import push_manifest
  serving_bench = _load_script("serving")
  source = os.path.join(work, "source")
  serving_toys.save_vocab_toy(source, 1)
  push_manifest.write_marker(source)
  base = os.path.join(work, "models")
  push_version(source, os.path.join(base, "vocab"), "1")
  server, target = serving_bench.start_server(base, os.path.join(work, "server.log"), 16)
  from recsys_tfx.serving.model_server import DEFAULT_MAX_RECEIVE_MB, MIB
  hostile = hostile_requests(int(DEFAULT_MAX_RECEIVE_MB * MIB))
  refused, answered, codes, slowest = 0, 0, set(), 0.0
  try:
    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", -1)])
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2
    normal = predict_pb2.PredictRequest()
    normal.model_spec.name = "vocab"
    normal.inputs["user_id"].CopyFrom(tf.make_tensor_proto(serving_toys.vocab_users()[:8]))
    for _ in range(50):
      stub.Predict(normal, timeout=30)
    time.sleep(1)
    idle = serving_toys.status_kib(server.pid, "VmRSS")
    with open(f"/proc/{server.pid}/clear_refs", "w") as f:
      f.write("5")  # the peak (VmHWM) starts again from the current RSS

    def send(req):
      nonlocal refused, answered, slowest
      started = time.monotonic()
      try:
        stub.Predict(req, timeout=60)
        answered += 1
      except grpc.RpcError as e:
        refused += 1
        codes.add(e.code().name)
      slowest = max(slowest, time.monotonic() - started)

    rounds = 3
    for _ in range(rounds):  # one at a time
      for req in hostile.values():
        send(req)
    threads = [threading.Thread(target=lambda: [send(r) for r in hostile.values()])
               for _ in range(8)]  # eight at once
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    stub.Predict(normal, timeout=30)  # still serving
    peak = serving_toys.status_kib(server.pid, "VmHWM")
    channel.close()
  finally:
    server.send_signal(signal.SIGTERM)
    server.wait(timeout=60)
  tried = len(hostile) * (rounds + 8)
  ratio = peak / idle
  return [_row(f"hostile and oversized requests ({len(hostile)} kinds, {rounds}x one at a "
               "time, 8x at once)", f"{tried} requests",
               f"{refused} refused ({', '.join(sorted(codes))}), {answered} answered; "
               f"peak RSS {peak / 1024:.0f} MiB = {ratio:.2f}x idle {idle / 1024:.0f} MiB",
               "all refused, < 1.2x", refused == tried and ratio < 1.2,
               f"slowest refusal {slowest:.2f} s")]


# --- inputs ----------------------------------------------------------------------------------

def bad_inputs(directory: str) -> Dict[str, tuple]:
  """name -> (`recsys run` arguments, file written). Each must be refused before a run."""
  header = "user_id,item_id,timestamp\n"

  def rows(users, items, per_user):
    return "".join(f"u{u},i{(u + k) % items},{978300760 + k}\n"
                   for u in range(users) for k in range(per_user))

  ok = rows(20, 30, 5)
  files = {
      "timestamp 99999999999999999999": header + ok + "u1,i1,99999999999999999999\n",
      "timestamp INT64_MAX": header + ok + "u1,i1,9223372036854775807\n",
      "negative timestamp": header + ok + "u1,i1,-1\n",
      "timestamps in milliseconds": header + rows(20, 30, 5).replace("978300", "978300000"),
      "a single user": header + rows(1, 30, 40),
      "too few interactions per user to hold any out": header + rows(40, 30, 2),
      "too few items": header + rows(40, 4, 5),
      "every row duplicated, too little left": header + rows(5, 30, 5) * 2,
      "a 10 MB id": header + ok + "u1," + "i" * 10_000_000 + ",978300760\n",
      "a 10 MB header line": "x" * 10_000_000 + "\n" + ok,
      "not UTF-8 (byte 0xff on line 3)": (header + "u,i,1\n").encode() + b"uu2,i\xff2,1\n",
      "missing column": "user_id,timestamp\n" + "u,1\n" * 50,
      "empty file": "",
      "binary garbage": bytes(range(256)) * 100,
      "blank ids": header + ok + " ,i1,978300760\n",
  }
  out = {}
  for number, (name, content) in enumerate(files.items()):
    path = os.path.join(directory, f"bad{number}.csv")
    with open(path, "wb") as f:
      f.write(content if isinstance(content, bytes) else content.encode())
    out[name] = (["--data", f"csv:{path}"], path)
  dup_path = os.path.join(directory, "dups.csv")
  with open(dup_path, "w") as f:
    f.write(header + ok * 2)
  config = os.path.join(directory, "refuse.yaml")
  with open(config, "w") as f:
    f.write("ingest:\n  duplicates: refuse\n")
  out["every row duplicated, ingest.duplicates: refuse"] = (
      ["--data", f"csv:{dup_path}", "--config", config], dup_path)
  return out


class _Started(Exception):
  pass


def run_inputs(work: str) -> List[Dict]:
  from recsys_tfx import cli
  from recsys_tfx.pipeline import local_runner
  started, refused, messages = [], 0, {}
  real = local_runner.create_pipeline

  def create_pipeline(*args, **kwargs):  # reached only when the input was accepted
    raise _Started()

  local_runner.create_pipeline = create_pipeline
  try:
    for name, (arguments, _) in bad_inputs(work).items():
      root = os.path.join(work, "runs", str(len(messages)))
      err = io.StringIO()
      try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
          code = cli.main(["run", *arguments, "--pipeline-root", root,
                           "--serving-dir", os.path.join(root, "serving")])
      except _Started:
        started.append(name)
        continue
      refused += code == 2
      messages[name] = err.getvalue().strip()[:160]
  finally:
    local_runner.create_pipeline = real
  tried = len(messages) + len(started)
  return [_row("bad input files given to `recsys run`", f"{tried} files",
               f"{len(started)} started a pipeline, {refused} refused with a one-line error",
               "0 started", not started, "; ".join(started))], messages


# --- runs ------------------------------------------------------------------------------------

KILLS = (("Transform", 5.0), ("RetrievalTrainer", 3.0), ("RetrievalValidator", 2.0))
RESOLVER = "LatestBlessedRetrievalModel"  # a Resolver node: it resolves again, never cached


def _runs(root: str) -> List[Dict]:
  from recsys_tfx import cli
  out = io.StringIO()
  with contextlib.redirect_stdout(out):
    cli.main(["metadata", "runs", "--pipeline-root", root, "--json"])
  return json.loads(out.getvalue())


def run_kills(work: str) -> List[Dict]:
  """Kills one small run in each of KILLS in turn (each kill lands in the rerun that
  resumes the run killed before), then runs it to the end; judged from ML Metadata."""
  from pipeline_run import run_killed_during, small_run_command
  command = small_run_command(work)
  root = os.path.join(work, "pipeline")
  missed = [component for number, (component, seconds) in enumerate(KILLS)
            if not run_killed_during(command, os.path.join(work, f"run{number}.log"),
                                     component, seconds)]
  final = subprocess.run(command, capture_output=True, text=True, timeout=1800)
  runs = _runs(root)
  injected = sum(1 for r in runs if r["status"] == "ABANDONED")
  resumed = 0
  for earlier, later in zip(runs, runs[1:]):  # each rerun reused all its predecessor finished
    if earlier["status"] == "ABANDONED":
      finished = {c["component"] for c in earlier["components"]
                  if c["state"] in ("COMPLETE", "CACHED") and c["component"] != RESOLVER}
      resumed += finished <= set(later["cached"])
  left_running = sum(1 for r in runs for c in r["components"] if c["state"] == "RUNNING")
  completed = final.returncode == 0 and runs[-1]["status"] == "COMPLETE"
  ok = not missed and resumed == injected == len(KILLS) and completed and not left_running
  return [_row(f"SIGKILL of `recsys run` in {', '.join(c for c, _ in KILLS)}, each "
               "followed by the same command", f"{injected} kills",
               f"{resumed} of {injected} reruns reused every finished component; the last "
               f"{'completed' if completed else 'FAILED'}; {injected} runs shown ABANDONED, "
               f"{left_running} left RUNNING", "all", ok,
               f"missed: {', '.join(missed)}" if missed else "")]


# --- main ------------------------------------------------------------------------------------

def table(rows: List[Dict]) -> str:
  lines = ["| fault | tried | result | target | met |", "|---|---|---|---|---|"]
  lines += [f"| {r['fault']} | {r['tried']} | {r['result']} | {r['target']} | {r['met']} |"
            for r in rows]
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--only", default=",".join(SECTIONS),
                      help=f"comma-separated sections: {', '.join(SECTIONS)}")
  parser.add_argument("--json", help="also write the rows (and input errors) here")
  args = parser.parse_args(argv)
  chosen = [s for s in args.only.split(",") if s]
  unknown = sorted(set(chosen) - set(SECTIONS))
  if unknown:
    parser.error(f"unknown section(s) {unknown}; expected some of {', '.join(SECTIONS)}")
  rows, extra = [], {}
  work = tempfile.mkdtemp(prefix="faults-")
  try:
    for section in chosen:
      print(f"-> {section}", flush=True)
      started = time.time()
      directory = os.path.join(work, section)
      os.makedirs(directory)
      if section == "swaps":
        rows += run_swaps(directory)
      elif section == "requests":
        rows += run_requests(directory)
      elif section == "inputs":
        found, extra["input_errors"] = run_inputs(directory)
        rows += found
      else:
        rows += run_kills(directory)
      print(f"<- {section} in {time.time() - started:.0f}s", flush=True)
  finally:
    shutil.rmtree(work, ignore_errors=True)
  print()
  print(table(rows))
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"rows": rows, **extra}, f, indent=2)
  return 0 if all(r["met"] == "yes" or r["target"] == "(limit)" for r in rows) else 1


if __name__ == "__main__":
  env.exit_now(main())
