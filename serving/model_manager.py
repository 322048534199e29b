"""Which version of each model is served: TF Serving's file-system source and
availability-preserving policy, for every model directory under one base path.

    <model_base>/<model_name>/<version>/saved_model.pb   (version: a directory named by an
                                                           integer; other names are ignored)

model_base may be a bucket URI (gs://...): every read goes through tf.io.gfile
(serving/model_files.py).

Every poll, for each model, the newest complete version that has not failed to load is
the one to serve. It is loaded on the poller thread while the old one keeps serving, then
swapped in by one assignment: requests already running hold the old version and finish on
it, later ones get the new one, so no request fails during a swap. Only that version stays
loaded (TF Serving's default "latest" version policy); older versions answer NOT_FOUND.

A version is loaded only once it is complete, never while it is still being copied in
(which would serve half a model, e.g. a vocabulary cut short, for as long as it stays):
with the completion marker the pipeline's pusher writes last (schema/push_manifest.py),
once every file the marker lists is there at its size; without one, once its files are
unchanged across two polls. Since the second rule is only a heuristic (a copy that pauses
for longer than a poll looks finished), a served version without a marker is watched and
reloaded if its files change after it loaded.

Every load, swap, failed load and rollback is logged (INFO, failures at ERROR) with the
model, the version and the reason. A version that fails to load (a corrupt directory) is
logged once, reported by GetModelStatus as END with its error, and not tried again until
its files change; the version already loaded keeps serving. Deliberate differences from
TF Serving: at start-up a broken newest version falls back to the next older one instead
of failing the server; when the served version's directory is removed the server rolls
back to the newest remaining version (logged as a rollback); and a model whose version
directories all disappear keeps serving the version it has (TF Serving would unload it).
"""
import dataclasses
import logging
import re
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import tensorflow as tf
from tensorflow_serving.apis import get_model_status_pb2

from recsys_tfx.schema import push_manifest
from recsys_tfx.serving import errors, model_files
from recsys_tfx.serving.servable import Servable, load_servable

log = logging.getLogger(__name__)

State = get_model_status_pb2.ModelVersionStatus.State
_VERSION_NAME = re.compile(r"[0-9]{1,18}")  # fits an int64, like TF Serving's version ids
_UNKNOWN = grpc.StatusCode.UNKNOWN.value[0]
STARTUP_SETTLE_SECONDS = 1.0


@dataclasses.dataclass(frozen=True)
class VersionStatus:
  state: int  # a ModelVersionStatus.State
  error_code: int = 0  # tensorflow.error.Code; 0 is OK
  error_message: str = ""


def list_versions(model_dir: str) -> Dict[int, str]:
  """version -> directory, for one model."""
  try:
    names = model_files.listdir(model_dir)
  except OSError:
    return {}
  paths = {int(n): model_files.join(model_dir, n) for n in names if _VERSION_NAME.fullmatch(n)}
  return {v: p for v, p in paths.items() if model_files.isdir(p)}


fingerprint = model_files.fingerprint


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
    self._last_seen: Dict[Tuple[str, int], Tuple] = {}  # (model, version) -> files last poll
    self._loaded_files: Dict[str, Tuple] = {}  # model -> the served version's files at load
    self._noted: Dict[object, str] = {}  # what was logged once, and in which state
    self._settling = False  # an unmarked version was seen for the first time this poll
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
    """Loads what is there now (before the server listens, as TF Serving does), then polls.
    A version without a completion marker loads only when seen unchanged twice, so then
    start-up takes a second look a moment later (at most a second: the server should not
    wait a long poll interval to serve models that are already there)."""
    self.poll()
    if self._settling and not self._stop.wait(min(self._poll_seconds, STARTUP_SETTLE_SECONDS)):
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
    self._settling = False
    for name in self._model_names():
      if self._stop.is_set():
        return
      self._update(name)

  def _model_names(self) -> List[str]:
    try:
      names = sorted(model_files.listdir(self.model_base))
    except OSError as e:
      log.warning("cannot list model base %s: %s", self.model_base, e)
      return []
    return [n for n in names if not n.startswith(".")
            and model_files.isdir(model_files.join(self.model_base, n))]

  def _update(self, name: str) -> None:
    model_dir = model_files.join(self.model_base, name)
    versions = list_versions(model_dir)
    served = self._served.get(name)
    if not versions:
      self._note((name, "versions"), "none", log.warning,
                 "no versions of model %s found under %s (version directories are named by "
                 "integers, e.g. %s/1/)%s", name, model_dir, model_dir,
                 f"; still serving version {served.version} from memory" if served else "")
      return
    self._noted.pop((name, "versions"), None)
    removed = served is not None and served.version not in versions
    if not removed:
      self._noted.pop((name, "removed"), None)
    reload_served = (served is not None and not removed
                     and self._changed_since_load(name, served, versions[served.version]))
    for version in sorted(versions, reverse=True):
      path = versions[version]
      if served is None:
        reason = "the newest complete version"
      elif version > served.version:
        reason = f"a newer version than {served.version}"
      elif version == served.version:
        if not reload_served:
          return  # nothing newer is complete and loadable
        reason = (f"reload: the files of version {version} changed after it was loaded (it "
                  "was copied without a completion marker)")
      elif removed:
        reason = f"rollback: the served version {served.version} was removed from {model_dir}"
      else:
        return  # never back to an older version while the served one is there
      files = fingerprint(path)
      if self._failed.get((name, version)) == files:
        continue  # failed before and unchanged since: don't retry
      waiting = self._incomplete(name, version, path, files)
      if waiting:
        kind, message = waiting
        self._note((name, version), kind, log.info, "not loading %s version %d yet: %s",
                   name, version, message)
        continue
      if self._load_and_swap(name, version, path, files, reason):
        return
    if removed:
      self._note((name, "removed"), "stuck", log.warning,
                 "version %d of %s was removed from %s and no other version can be loaded "
                 "yet; still serving it from memory", served.version, name, model_dir)

  def _note(self, key, state: str, emit, message: str, *args) -> None:
    """Logs `message` once for as long as `key` stays in `state`, not at every poll."""
    if self._noted.get(key) != state:
      self._noted[key] = state
      emit(message, *args)

  def _changed_since_load(self, name: str, served: Servable, path: str) -> bool:
    """Whether the served version's files changed after it loaded. Only versions without
    a completion marker are watched: one copied by hand that paused for longer than two
    polls looked complete when it was not, and is reloaded once its copy has finished."""
    if model_files.check_marker(path)[0]:
      return False
    return fingerprint(path) != self._loaded_files.get(name)

  def _incomplete(self, name: str, version: int, path: str,
                  files: Tuple) -> Optional[Tuple[str, str]]:
    """None when the version directory is complete, else (kind, why not in words).

    With a completion marker (schema/push_manifest.py; the pipeline's pusher writes it
    last): every file the marker lists must be there at its size, whatever order they
    arrive in. Without one (a version pushed by another tool), the directory must be
    unchanged (names, sizes, mtimes) since the previous poll: a copy in progress changes
    between polls. The first sight of an unmarked directory therefore never loads it."""
    previous = self._last_seen.get((name, version))
    self._last_seen[(name, version)] = files
    marked, problem = model_files.check_marker(path)
    if marked:
      return None if problem is None else ("incomplete", f"still being copied: {problem}")
    if not files:
      return "empty", "the directory is empty"
    if previous != files:
      self._settling = True
      return "changing", (f"no completion marker ({push_manifest.MARKER}), so waiting until "
                          "its files are unchanged across two polls")
    return None

  def _set_status(self, name: str, version: int, status: VersionStatus) -> None:
    with self._lock:
      self._statuses.setdefault(name, {})[version] = status

  def _load_and_swap(self, name: str, version: int, path: str, files: Tuple,
                     reason: str) -> bool:
    self._set_status(name, version, VersionStatus(State.LOADING))
    log.info("loading %s version %d from %s (%s)", name, version, path, reason)
    started = time.monotonic()
    try:
      servable = self._load(name, version, path)
    except Exception as e:  # whatever went wrong, the served version stays
      self._failed[(name, version)] = files
      message = f"{type(e).__name__}: {e}"
      self._set_status(name, version, VersionStatus(State.END, _error_code(e), message))
      with self._lock:
        old = self._served.get(name)
      kept = f"; still serving version {old.version}" if old is not None else ""
      log.error("failed to load %s version %d from %s (%s); not retrying until its files "
                "change%s: %s", name, version, path, reason, kept, message)
      return False
    self._failed.pop((name, version), None)
    self._loaded_files[name] = files
    with self._lock:
      old = self._served.get(name)
      self._served[name] = servable  # the swap
      self._statuses.setdefault(name, {})[version] = VersionStatus(State.AVAILABLE)
      if old is not None and old.version != version:
        self._statuses[name][old.version] = VersionStatus(State.END)
    took = time.monotonic() - started
    if old is None:
      log.info("serving %s version %d (loaded in %.1fs; %s)", name, version, took, reason)
    else:
      log.info("swapped %s from version %d to version %d (loaded in %.1fs; %s); version %d "
               "unloaded", name, old.version, version, took, reason, old.version)
    return True
