"""The test suite is an entry point like the `recsys` command: it sets the process
environment TensorFlow needs (cli/env.py) before any test imports it. The project
is imported as installed (`pip install -e .`), never from the repository path."""
from recsys_tfx import env

env.configure()

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_pipeline_run(tmp_path_factory):
  """One real pipeline run (tests/pipeline_run.py) shared by every end-to-end test that
  only reads what it left behind; tests that run the pipeline themselves (validation)
  use their own directories."""
  from pipeline_run import run_small_pipeline
  return run_small_pipeline(tmp_path_factory.mktemp("shared_run"))
