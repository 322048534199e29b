"""`recsys report` names the TensorBoard command for each trainer's logs (its ModelRun)."""
from ml_metadata.metadata_store import metadata_store
from tfx.orchestration import metadata as tfx_metadata

from recsys_tfx.pipeline import report
from test_metadata import Recorder


def test_one_tensorboard_command_per_trainer_of_the_run(tmp_path):
  store = metadata_store.MetadataStore(
      tfx_metadata.sqlite_metadata_connection_config(str(tmp_path / "metadata.sqlite")))
  r = Recorder(store)
  for run in ("run-1", "run-2"):
    r.run(run, "RetrievalTrainer", outputs={"model_run": ("ModelRun", {})})
  r.run("run-2", "RankingTrainer", outputs={"model_run": ("ModelRun", {})})
  assert report.tensorboard_commands(store, "run-1") == [
      "tensorboard --logdir /root/RetrievalTrainer/model_run/run-1   # RetrievalTrainer"]
  assert report.tensorboard_commands(store, "run-2") == [
      "tensorboard --logdir /root/RetrievalTrainer/model_run/run-2   # RetrievalTrainer",
      "tensorboard --logdir /root/RankingTrainer/model_run/run-2   # RankingTrainer"]
