"""Which version of each model is served: TF Serving's file-system source and
availability-preserving policy, for every model directory under one base path.

    <model_base>/<model_name>/<version>/saved_model.pb   (version: a directory named by an
                                                           integer; other names are ignored)

Every poll, for each model, the newest version that has not failed to load is the one to
serve. It is loaded on the poller thread while the old one keeps serving, then swapped in
by one assignment: requests already running hold the old version and finish on it, later
ones get the new one, so no request fails during a swap. Only that version stays loaded
(TF Serving's default "latest" version policy); older versions answer NOT_FOUND.

A version that fails to load (a corrupt or partial directory) is logged once, reported by
GetModelStatus as END with its error, and not tried again until its files change; the
version already loaded keeps serving. Two deliberate differences from TF Serving: at
start-up a broken newest version falls back to the next older one instead of failing the
server, and a model whose version directories all disappear keeps serving the version it
has (TF Serving would unload it).
"""
import dataclasses
import logging
import os
import re
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from recsys_tfx.serving import errors
from recsys_tfx.serving.servable import Servable, load_servable

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State
_VERSION_NAME = re.compile(r"[0-9]{1,18}")  # fits an int64, like TF Serving's version ids
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  state: int  # a ModelVersionStatus.State
  error_code: int = 0  # tensorflow.error.Code; 0 is OK
  error_message: str = ""


def list_versions(model_dir: str) -> Dict[int, str]:
  """version -> directory, for one model."""
  try:
    names = os.listdir(model_dir)
  except OSError:
    return {}
  paths = {int(n): os.path.join(model_dir, n) for n in names if _VERSION_NAME.fullmatch(n)}
  return {v: p for v, p in paths.items() if os.path.isdir(p)}


def fingerprint(path: str) -> Tuple:
  """Names, sizes and modification times of a version's files: changes when it is rewritten."""
  files = []
  for root, _, names in os.walk(path):
    for name in names:
      try:
        stat = os.stat(os.path.join(root, name))
      except OSError:
        continue
      files.append((os.path.relpath(os.path.join(root, name), path), stat.st_size,
                    stat.st_mtime_ns))
  return tuple(sorted(files))


def _error_code(error: Exception) -> int:
  if isinstance(error, tf.errors.OpError):
    return error.error_code
  if isinstance(error, errors.ServingError):
    return error.code.value[0]
  return _UNKNOWN


class ModelManager:
  """Serves the newest loadable version of every model under model_base.

  Reads (get, statuses, served_versions) may come from any thread. Loading happens on one
  thread at a time: the caller of start() first, then the poller.
  """

  def __init__(self, model_base: str, poll_seconds: float = 2.0,
               load: Callable[[str, int, str], Servable] = load_servable):
    self.model_base = model_base
    self._poll_seconds = poll_seconds
    self._load = load
    self._lock = threading.Lock()
    self._served: Dict[str, Servable] = {}
    self._statuses: Dict[str, Dict[int, VersionStatus]] = {}
    self._failed: Dict[Tuple[str, int], Tuple] = {}  # (model, version) -> files when it failed
    self._no_versions_logged = set()
    self._stop = threading.Event()
    self._thread: Optional[threading.Thread] = None

  # --- reads -------------------------------------------------------------------------------

  def get(self, name: str, version: Optional[int] = None) -> Servable:
    """The served version of `name` (or exactly `version`); NOT_FOUND otherwise."""
    with self._lock:
      servable = self._served.get(name)
    if servable is None or (version is not None and version != servable.version):
      request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
      raise errors.not_found(f"Servable not found for request: {request}")
    return servable

  def statuses(self, name: str) -> Dict[int, VersionStatus]:
    with self._lock:
      return dict(self._statuses.get(name, {}))

  def served_versions(self) -> Dict[str, int]:
    with self._lock:
      return {name: s.version for name, s in sorted(self._served.items())}

  # --- polling -----------------------------------------------------------------------------

  def start(self) -> None:
    """Loads what is there now (before the server listens, as TF Serving does), then polls."""
    self.poll()
    self._thread = threading.Thread(target=self._poll_forever, name="model-poller", daemon=True)
    self._thread.start()

  def stop(self) -> None:
    self._stop.set()
    if self._thread is not None:
      self._thread.join()

  def _poll_forever(self) -> None:
    while not self._stop.wait(self._poll_seconds):
      try:
        self.poll()
      except Exception:  # a bad poll must not end polling
        log.exception("polling %s failed; trying again in %ss", self.model_base,
                      self._poll_seconds)

  def poll(self) -> None:
    for name in self._model_names():
      if self._stop.is_set():
        return
      self._update(name)

  def _model_names(self) -> List[str]:
    try:
      names = sorted(os.listdir(self.model_base))
    except OSError as e:
      log.warning("cannot list model base %s: %s", self.model_base, e)
      return []
    return [n for n in names
            if not n.startswith(".") and os.path.isdir(os.path.join(self.model_base, n))]

  def _update(self, name: str) -> None:
    model_dir = os.path.join(self.model_base, name)
    versions = list_versions(model_dir)
    if not versions:
      if name not in self._no_versions_logged:
        self._no_versions_logged.add(name)
        log.warning("no versions of model %s found under %s (version directories are named "
                    "by integers, e.g. %s/1/)", name, model_dir, model_dir)
      return
    self._no_versions_logged.discard(name)
    served = self._served.get(name)
    for version in sorted(versions, reverse=True):
      if served is not None and version == served.version:
        return  # nothing newer can be loaded
      files = fingerprint(versions[version])
      if self._failed.get((name, version)) == files:
        continue  # failed before and unchanged since: don't retry
      if self._load_and_swap(name, version, versions[version], files):
        return

  def _set_status(self, name: str, version: int, status: VersionStatus) -> None:
    with self._lock:
      self._statuses.setdefault(name, {})[version] = status

  def _load_and_swap(self, name: str, version: int, path: str, files: Tuple) -> bool:
    self._set_status(name, version, VersionStatus(State.LOADING))
    log.info("loading %s version %d from %s", name, version, path)
    started = time.monotonic()
    try:
      servable = self._load(name, version, path)
    except Exception as e:  # whatever went wrong, the served version stays
      self._failed[(name, version)] = files
      message = f"{type(e).__name__}: {e}"
      self._set_status(name, version, VersionStatus(State.END, _error_code(e), message))
      log.error("failed to load %s version %d from %s; not retrying until its files change: "
                "%s", name, version, path, message)
      return False
    self._failed.pop((name, version), None)
    with self._lock:
      old = self._served.get(name)
      self._served[name] = servable  # the swap
      self._statuses.setdefault(name, {})[version] = VersionStatus(State.AVAILABLE)
      if old is not None:
        self._statuses[name][old.version] = VersionStatus(State.END)
    unloaded = f", unloaded version {old.version}" if old is not None else ""
    log.info("serving %s version %d (loaded in %.1fs%s)", name, version,
             time.monotonic() - started, unloaded)
    return True
