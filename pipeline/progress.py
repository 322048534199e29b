"""A line per pipeline stage as it starts and ends; TFX's own verbose log goes to a file.

LocalDagRunner logs "Component X is running." / "Component X is finished." through absl;
this turns those into short progress lines with elapsed times and sends the rest of the
INFO stream to <pipeline_root>/logs/pipeline.log, where it stays available for debugging.
"""
import logging
import os
import re
import sys
import time

from absl import logging as absl_logging

_STARTED = re.compile(r"Component (\S+) is running\.")
_FINISHED = re.compile(r"Component (\S+) is finished\.")


class _StageLines(logging.Handler):

  def __init__(self, stream):
    super().__init__(logging.INFO)
    self._stream = stream
    self._started = {}
    self._run_start = time.time()

  def emit(self, record: logging.LogRecord):
    message = record.getMessage()
    started, finished = _STARTED.match(message), _FINISHED.match(message)
    if started:
      self._started[started.group(1)] = time.time()
      self._line(f"-> {started.group(1)} started")
    elif finished:
      name = finished.group(1)
      took = time.time() - self._started.get(name, time.time())
      self._line(f"<- {name} finished in {took:.1f}s")

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
