"""What a user sees while a pipeline runs: stage lines on stdout, and what Beam's worker
processes write to stderr (tracebacks as they exit) in the run's log instead."""
import logging
import subprocess
import sys

from recsys_tfx.pipeline import progress


def test_worker_stderr_goes_to_the_log_and_comes_back_after(tmp_path, capfd):
  log = tmp_path / "pipeline.log"
  with progress.stderr_to_log(str(log)):
    subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('worker noise\\n')"],
                   check=True)
    print("progress line", flush=True)
  sys.stderr.write("after the run\n")
  sys.stderr.flush()
  out, err = capfd.readouterr()
  assert "worker noise" in log.read_text() and "worker noise" not in err
  assert "progress line" in out
  assert "after the run" in err and "after the run" not in log.read_text()


def test_stage_lines_from_the_runner_log(tmp_path):
  stream = tmp_path / "stages.txt"
  absl = logging.getLogger("absl")
  before = (list(absl.handlers), absl.propagate)
  try:
    with open(stream, "w") as f:
      path = progress.install(str(tmp_path / "logs"), stream=f)
      absl.info("Component Transform is running.")
      absl.info("some detail")
      absl.info("Component Transform is finished.")
  finally:
    absl.handlers, absl.propagate = before
  lines = stream.read_text().splitlines()
  assert [line.split("] ", 1)[1].split(" in ")[0] for line in lines] == \
      ["-> Transform started", "<- Transform finished"]
  assert "some detail" in open(path).read()
