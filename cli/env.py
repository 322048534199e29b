"""The process environment TensorFlow needs, set in one place.

TensorFlow Recommenders needs Keras 2 (the tf_keras package), which TensorFlow 2.16
uses only when TF_USE_LEGACY_KERAS=1 is set before it is first imported. Entry points
(the `recsys` command, the test suite's conftest) call `configure()` before anything
imports TensorFlow; the container image sets the same variables (Dockerfile). Modules
that build Keras models only check, with `require_legacy_keras`, as
tensorflow_recommenders checks its Keras version on import.
"""
import logging
import os
import warnings

LEGACY_KERAS = "TF_USE_LEGACY_KERAS"


def configure() -> None:
  """Keras 2 for TensorFlow, and TensorFlow's C++ start-up chatter (CUDA factories,
  oneDNN, CPU features) off; warnings of third-party packages are not a user's business
  (google-api-core warns on every import that Python 3.10 is old; TFX 1.16 requires it)."""
  os.environ.setdefault(LEGACY_KERAS, "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  os.environ.setdefault("GLOG_minloglevel", "2")  # ML Metadata's and ScaNN's C++ logs
  # Beam's worker processes inherit the environment, not this process's filters.
  os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning,ignore::DeprecationWarning")
  warnings.filterwarnings("ignore", category=FutureWarning)
  warnings.filterwarnings("ignore", category=DeprecationWarning)
  # TFX, TFMA and TensorFlow log through absl; their warnings are not a user's business
  # (a pipeline run sends all of it to its log file: pipeline/progress.py).
  logging.getLogger("absl").setLevel(logging.ERROR)
  logging.getLogger("tensorflow").setLevel(logging.ERROR)


def require_legacy_keras(who: str) -> None:
  """Raises ImportError unless TF_USE_LEGACY_KERAS=1, naming `who` needs it."""
  if os.environ.get(LEGACY_KERAS) != "1":
    raise ImportError(
        f"{who} builds Keras 2 models (TensorFlow Recommenders needs tf_keras): set "
        f"{LEGACY_KERAS}=1 before TensorFlow is imported. The `recsys` command and the "
        f"container image do; in your own script call recsys_tfx.env.configure() first.")


def exit_now(code: int) -> None:
  """Ends the process with `code` once output is flushed, skipping the interpreter's
  teardown: there, TensorFlow frees the functions of loaded models after the modules they
  need are gone and prints "Exception ignored in: <function AtomicFunction.__del__>"
  with a traceback, dozens of times. Only for a command's last line: nothing runs after."""
  import logging
  import sys
  logging.shutdown()
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except (OSError, ValueError):
      pass
  os._exit(code)
