"""One real pipeline run on a small synthetic world, for end-to-end tests to share: the
same LocalDagRunner / Beam / MLMD run as `recsys run`, into a temporary directory."""
import os
from typing import Dict, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC_INTERACTIONS = 20000
EPOCHS = 4


def run_small_pipeline(tmp_root) -> Tuple[object, Dict[str, object]]:
  """Runs configs/demo.yaml on 20k synthetic interactions under tmp_root, with the
  two-tower as the one retrieval model (so its ScaNN index is what serves) and the
  ranking stage on, its gate at min_rerank_lift -1: <tmp_root>/pipeline (artifacts, MLMD, canonical data under
  data/synthetic) and <tmp_root>/serving (retrieval/<version>/, ranking/<version>/ when
  the ranker was blessed). Returns (config, the run's summary dict: pushed_model,
  metrics, ranking_model, ranking_metrics, ...)."""
  from recsys_tfx.pipeline import configs, local_runner  # TFX: imported only when a test runs it
  config = configs.load(os.path.join(REPO, "configs", "demo.yaml"), {
      "pipeline_root": os.path.join(str(tmp_root), "pipeline"),
      "serving_dir": os.path.join(str(tmp_root), "serving"),
      "synthetic_interactions": SYNTHETIC_INTERACTIONS,
      "trainer.epochs": EPOCHS, "trainer.models": ["two_tower"],
      # Any ranker that does not lose to the retrieval order is pushed, so the serving
      # tests always exercise both stages; the gate at the demo's threshold, and one
      # that must refuse a reversed ranker, are tested in tests/pipeline/.
      "validation.min_rerank_lift": -1.0,
  })
  return config, local_runner.run(config)


def run_history_model(tmp_root, models, history_length: int,
                      model_args: Dict[str, object] = None) -> Tuple[object, Dict[str, object]]:
  """Runs configs/demo.yaml on 20k synthetic interactions with `models` (trainer.models;
  at least one reads history) as the retrieval models and the ranking stage off, under
  tmp_root. `model_args`: trainer.model_args (model name -> knobs)."""
  from recsys_tfx.pipeline import configs, local_runner
  overrides = {"pipeline_root": os.path.join(str(tmp_root), "pipeline"),
               "serving_dir": os.path.join(str(tmp_root), "serving"),
               "synthetic_interactions": SYNTHETIC_INTERACTIONS, "trainer.models": list(models),
               "trainer.history_length": history_length, "ranking.enabled": False}
  if model_args:
    overrides["trainer.model_args"] = model_args
  config = configs.load(os.path.join(REPO, "configs", "demo.yaml"), overrides)
  return config, local_runner.run(config)


def planted_next_episodes(seed: int, count: int = 30) -> List[Tuple[str, str]]:
  """(a series' first episode, its next episode) pairs planted in the synthetic world of
  SYNTHETIC_INTERACTIONS."""
  import numpy as np
  from recsys_tfx.components.ingest import synthetic
  _, world = synthetic.generate_with_world(**synthetic.size_for(SYNTHETIC_INTERACTIONS),
                                           seed=seed)
  return [(f"i{first}", f"i{world.series_next[first]}")
          for first in np.flatnonzero(world.series_next >= 0)[:count]]


def assert_grpc_history_request_equals_saved_model(serving_dir: str, model) -> None:
  """A history request over gRPC (tensorflow-serving-api stubs, real socket) returns what
  the SavedModel's recommend_with_history returns in-process."""
  import numpy as np
  import tensorflow as tf
  from recsys_tfx.serving.client import PredictionClient
  from recsys_tfx.serving.model_server import ModelServer
  server = ModelServer(serving_dir, port=0).start()
  try:
    with PredictionClient(server.address) as client:
      ids, scores = client.retrieve("anyone", {"hour": 21}, history=["i3", "i7", "i11"])
  finally:
    server.stop()
  direct = model.signatures["recommend_with_history"](
      history=tf.constant([["i3", "i7", "i11"]]), hour=tf.constant([21], tf.int64),
      device=tf.constant([""]))
  assert ids == [i.decode() for i in direct["item_ids"].numpy()[0]]
  np.testing.assert_allclose(scores, direct["scores"].numpy()[0], rtol=1e-5)


# --- interrupted runs ----------------------------------------------------------------------

# A run small enough to interrupt and resume in a test: ~3K synthetic interactions, one
# epoch, no ranking stage (about 80 s to the RetrievalTrainer on 2 cores).
SMALL_RUN_CONFIG = ("pipeline_name: recsys-resume\ndata: synthetic\n"
                    "synthetic_interactions: 3000\nseed: 0\ntrainer:\n  epochs: 1\n"
                    "ranking:\n  enabled: false\n")


def small_run_command(tmp_root) -> List[str]:
  """`recsys run` of SMALL_RUN_CONFIG under tmp_root (pipeline/, serving/, config)."""
  import sys
  config = os.path.join(str(tmp_root), "small.yaml")
  with open(config, "w") as f:
    f.write(SMALL_RUN_CONFIG)
  recsys = os.path.join(os.path.dirname(sys.executable), "recsys")
  return [recsys, "run", "--config", config, "--pipeline-root",
          os.path.join(str(tmp_root), "pipeline"), "--serving-dir",
          os.path.join(str(tmp_root), "serving")]


def run_killed_during(command: List[str], log_path: str, component: str,
                      seconds_in: float = 3.0, timeout: float = 900) -> bool:
  """Starts `command` (in its own process group), waits until `component` has run for
  `seconds_in` seconds, then SIGKILLs the whole group (Beam's workers too), as an OOM
  kill or a power cut would. Returns whether it was killed while `component` ran (False
  when the run finished or failed first)."""
  import signal
  import subprocess
  import time
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
  started, deadline = None, time.monotonic() + timeout
  try:
    while time.monotonic() < deadline and process.poll() is None:
      with open(log_path) as f:
        text = f.read()
      if f"<- {component} " in text:
        return False  # it finished before the kill
      if started is None and f"-> {component} started" in text:
        started = time.monotonic()
      if started is not None and time.monotonic() - started >= seconds_in:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        return True
      time.sleep(0.2)
    return False
  finally:
    if process.poll() is None:
      os.killpg(process.pid, signal.SIGKILL)
      process.wait()
