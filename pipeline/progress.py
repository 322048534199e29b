"""A line per pipeline stage as it starts and ends (or reuses a cached output); TFX's own
verbose log goes to a file.

LocalDagRunner logs "Component X is running." / "Component X is finished." through absl;
this turns those into short progress lines with elapsed times and sends the rest of the
INFO stream to <pipeline_root>/logs/pipeline.log, where it stays available for debugging.
"""
import contextlib
import logging
import os
import re
import sys
import time

from absl import logging as absl_logging

_STARTED = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")
_CACHED = re.compile(r"A cached execution \d+ is used\.")  # TFX's launcher, on a cache hit


class _StageLines(logging.Handler):

  def __init__(self, stream):
    super().__init__(logging.INFO)
    self._stream = stream
    self._started = {}
    self._current = None  # LocalDagRunner runs one component at a time
    self._cached = set()
    self._run_start = time.time()

  def emit(self, record: logging.LogRecord):
    message = record.getMessage()
    started, finished = _STARTED.match(message), _FINISHED.match(message)
    if started:
      self._current = started.group(1)
      self._started[self._current] = time.time()
      self._line(f"-> {self._current} started")
    elif _CACHED.match(message) and self._current:
      self._cached.add(self._current)
    elif finished:
      name = finished.group(1)
      took = time.time() - self._started.get(name, time.time())
      how = "reused its earlier output (cached)" if name in self._cached else "finished"
      self._line(f"<- {name} {how} in {took:.1f}s")

  def _line(self, text: str):
    elapsed = time.time() - self._run_start
    self._stream.write(f"[{elapsed:7.1f}s] {text}\n")
    self._stream.flush()


def install(log_dir: str, stream=sys.stdout) -> str:
  """Routes absl INFO logs to a file and stage lines to `stream`. Returns the log path."""
  os.makedirs(log_dir, exist_ok=True)
  path = os.path.join(log_dir, "pipeline.log")
  absl_logging.set_verbosity(absl_logging.INFO)
  logger = logging.getLogger("absl")
  logger.propagate = False
  for handler in list(logger.handlers):
    if isinstance(handler, (_StageLines, logging.FileHandler)):
      logger.removeHandler(handler)
  file_handler = logging.FileHandler(path)
  file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
  logger.addHandler(file_handler)
  logger.addHandler(_StageLines(stream))
  # Beam's and TensorFlow's Python loggers are as chatty; their lines go to the file too.
  for name in ("apache_beam", "tensorflow"):
    other = logging.getLogger(name)
    other.propagate = False
    other.handlers = [file_handler]
  return path


@contextlib.contextmanager
def stderr_to_log(path: str):
  """File descriptor 2 goes to the run's log while the pipeline runs. Beam's worker
  processes inherit it, and each prints "Exception ignored in: AtomicFunction.__del__"
  tracebacks as it exits; TensorFlow's C++ writes there too. Progress and the
  components' results go to stdout, so the user still sees them."""
  sys.stderr.flush()
  saved = os.dup(2)
  with open(path, "a") as log:
    os.dup2(log.fileno(), 2)
  try:
    yield
  finally:
    sys.stderr.flush()
    os.dup2(saved, 2)
    os.close(saved)
