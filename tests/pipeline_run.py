"""One real pipeline run on a small synthetic world, for end-to-end tests to share: the
same LocalDagRunner / Beam / MLMD run as `recsys run`, into a temporary directory."""
import os
from typing import Dict, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYNTHETIC_INTERACTIONS = 20000
EPOCHS = 4


def run_small_pipeline(tmp_root) -> Tuple[object, Dict[str, object]]:
  """Runs configs/demo.yaml on 20k synthetic interactions under tmp_root:
  <tmp_root>/pipeline (artifacts, MLMD, canonical data under data/synthetic) and
  <tmp_root>/serving (retrieval/<version>/, ranking/<version>/). Returns (config, the
  run's summary dict: pushed_model, metrics, ranking_model, ranking_metrics)."""
  from pipeline import configs, local_runner  # TFX: imported only when a test runs it
  config = configs.load(os.path.join(REPO, "configs", "demo.yaml"), {
      "pipeline_root": os.path.join(str(tmp_root), "pipeline"),
      "serving_dir": os.path.join(str(tmp_root), "serving"),
      "synthetic_interactions": SYNTHETIC_INTERACTIONS,
      "trainer.epochs": EPOCHS,
  })
  return config, local_runner.run(config)
