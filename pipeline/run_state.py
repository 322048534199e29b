"""One `recsys run` at a time per pipeline root, what is left of runs that did not finish,
and what makes a rerun resume safely.

A run killed mid-way (SIGKILL, out of memory, a reboot) leaves its last components
RUNNING in ML Metadata forever and their output directories half written (an empty
model directory, for a Trainer). TFX's cache, on by default (`recsys run --no-cache` to
recompute), reuses only executions that completed, so a rerun of the same command
resumes: finished components are reused, the interrupted one runs again, and partial
outputs never feed it. This module makes that state honest and the reuse safe:

- run_lock: `recsys run` holds an exclusive lock on <pipeline_root>/.run.lock (flock:
  the kernel releases it when the process ends, however it ends), so two runs never
  share a root and anyone can tell whether a run is in progress (run_in_progress).
- abandon_unfinished: at the start of a run, with the lock held (so nothing else is
  running), executions still RUNNING or NEW are marked CANCELED with a custom property
  `abandoned` saying so, their output artifacts ABANDONED (never LIVE, so never an input
  or a cache hit), and those artifacts' directories under the pipeline root removed.
  `recsys metadata runs` shows such runs as ABANDONED, not RUNNING.
- code_version and pinned_schema: what the cache key must also cover. TFX keys a
  component on its inputs and properties, not on the code that runs it or on the content
  of a file a property names; so the examples' component carries a fingerprint of the
  project's code (a rerun after a code change recomputes instead of reusing outputs of
  the old code), and the schema is passed as a copy named by its content (an edited
  schema is a new input).
"""
import contextlib
import datetime
import fcntl
import glob
import hashlib
import importlib.util
import os
import shutil
import time
from typing import Iterator, List

LOCK_FILE = ".run.lock"
ABANDONED = "abandoned"  # the custom property of an execution marked abandoned
# The layers whose code decides what a run produces (serving, kubeflow and cli do not).
CODE_PACKAGES = ("recsys_tfx.schema", "recsys_tfx.trainer", "recsys_tfx.components",
                 "recsys_tfx.leaderboard", "recsys_tfx.pipeline")


class RunInProgress(RuntimeError):
  """Another `recsys run` holds the pipeline root."""


def _lock_path(pipeline_root: str) -> str:
  return os.path.join(pipeline_root, LOCK_FILE)


@contextlib.contextmanager
def run_lock(pipeline_root: str, wait_seconds: float = 1.0) -> Iterator[None]:
  """Holds the pipeline root's run lock for the block; RunInProgress if another run has it
  (after `wait_seconds`, in case a reader is only probing it)."""
  os.makedirs(pipeline_root, exist_ok=True)
  path = _lock_path(pipeline_root)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by exec'd children
  deadline = time.monotonic() + wait_seconds
  while True:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
      break
    except BlockingIOError:
      if time.monotonic() < deadline:
        time.sleep(0.1)
        continue
      holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
      os.close(fd)
      raise RunInProgress(f"{pipeline_root} is in use by another `recsys run` ({holder}); "
                          "wait for it to finish, or pass another --pipeline-root") from None
  try:
    os.ftruncate(fd, 0)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    os.write(fd, f"pid {os.getpid()} since {started}\n".encode())
    yield
  finally:
    os.close(fd)  # releases the lock; the file stays (its content says who held it last)


def run_in_progress(pipeline_root: str) -> bool:
  """Whether a `recsys run` holds the pipeline root now."""
  try:
    fd = os.open(_lock_path(pipeline_root), os.O_RDONLY)
  except OSError:
    return False  # never locked: no run of this version is using it
  try:
    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    return False
  except BlockingIOError:
    return True
  finally:
    os.close(fd)


def abandon_unfinished(metadata_path: str, pipeline_root: str) -> List[str]:
  """Marks what interrupted runs left unfinished (module docstring); returns the
  components, as "<node> (execution <id>, run <run id>)". Call with run_lock held."""
  if not os.path.isfile(metadata_path):
    return []
  from ml_metadata.metadata_store import metadata_store
  from ml_metadata.proto import metadata_store_pb2 as mlmd
  from recsys_tfx.pipeline import metadata
  config = mlmd.ConnectionConfig()
  config.sqlite.filename_uri = metadata_path
  config.sqlite.connection_mode = mlmd.SqliteMetadataSourceConfig.READWRITE
  store = metadata_store.MetadataStore(config)
  unfinished = (mlmd.Execution.RUNNING, mlmd.Execution.NEW)
  stale = [e for e in store.get_executions() if e.last_known_state in unfinished]
  if not stale:
    return []
  snap = metadata.snapshot(store)
  now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
  outputs = set()
  described = []
  for execution in stale:
    execution.last_known_state = mlmd.Execution.CANCELED
    execution.custom_properties[ABANDONED].string_value = (
        f"its run ended before it finished (found at {now}); its outputs were discarded")
    outputs |= {event.artifact_id for event in store.get_events_by_execution_ids([execution.id])
                if event.type not in metadata.INPUTS}
    described.append(f"{snap.node.get(execution.id, '?')} (execution {execution.id}, run "
                     f"{snap.run.get(execution.id, '?')})")
  artifacts = store.get_artifacts_by_id(sorted(outputs)) if outputs else []
  root = os.path.realpath(pipeline_root)
  partial = [a.uri for a in artifacts if a.uri]
  for execution in stale:
    # Outputs an execution had not yet published are not in MLMD, only on disk, where TFX
    # puts them: <pipeline_root>/<node>/<output key>/<execution id> (and its scratch space
    # under <node>/.system/).
    node = snap.node.get(execution.id)
    if node:
      partial += glob.glob(os.path.join(root, glob.escape(node), "*", str(execution.id)))
      partial += glob.glob(os.path.join(root, glob.escape(node), ".system", "*",
                                        str(execution.id)))
  for artifact in artifacts:
    artifact.state = mlmd.Artifact.ABANDONED
  for path in partial:
    if os.path.realpath(path).startswith(root + os.sep):
      shutil.rmtree(path, ignore_errors=True)  # partial output: never an input
  store.put_executions(stale)
  if artifacts:
    store.put_artifacts(artifacts)
  return described


def code_version() -> str:
  """A fingerprint of the code of the layers that decide what a run produces."""
  digest = hashlib.sha256()
  for package in CODE_PACKAGES:
    spec = importlib.util.find_spec(package)
    for folder in spec.submodule_search_locations or []:
      for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(n for n in names if n.endswith((".py", ".pbtxt"))):
          path = os.path.join(root, name)
          digest.update(os.path.relpath(path, folder).encode() + b"\0")
          with open(path, "rb") as f:
            digest.update(f.read())
  return digest.hexdigest()[:16]


def pinned_schema(schema_file: str, data_dir: str) -> str:
  """A copy of the schema named by its content, under the run's data directory: the path
  the components get changes exactly when the schema does."""
  with open(schema_file, "rb") as f:
    content = f.read()
  digest = hashlib.sha256(content).hexdigest()[:16]
  target = os.path.join(data_dir, "schemas", digest, os.path.basename(schema_file))
  if not os.path.isfile(target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temporary = f"{target}.tmp-{os.getpid()}"
    with open(temporary, "wb") as f:
      f.write(content)
    os.replace(temporary, target)
  return os.path.abspath(target)
