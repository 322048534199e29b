import os
import sys

# The project's packages set TF_USE_LEGACY_KERAS on import; tests may import TensorFlow
# first, so set it here as well.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_pipeline_run(tmp_path_factory):
  """One real pipeline run (tests/pipeline_run.py) shared by every end-to-end test that
  only reads what it left behind; tests that run the pipeline themselves (validation)
  use their own directories."""
  from pipeline_run import run_small_pipeline
  return run_small_pipeline(tmp_path_factory.mktemp("shared_run"))
