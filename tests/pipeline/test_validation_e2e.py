"""Model validation gates every push: the pipeline runs twice on the same data; a trained
model is blessed and pushed, then an untrained one (train_steps=0) is not blessed, not
pushed, and the serving directory still holds the first version. The TFMA metrics are
checked against an independent NumPy computation over the same held-out examples."""
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_model_analysis as tfma
from tfx.types import standard_artifacts

from recsys_tfx.components.evaluation_data import read_split
from recsys_tfx.pipeline import configs, local_runner, summary
from recsys_tfx.trainer import export
from recsys_tfx.schema import features as feats

pytestmark = pytest.mark.e2e
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
  root = tmp_path_factory.mktemp("validation")
  overrides = {"pipeline_root": str(root / "pipeline"), "serving_dir": str(root / "serving"),
               "synthetic_interactions": 15000, "trainer.epochs": 3, "ranking.epochs": 2,
               "trainer.models": ["two_tower"]}
  good = local_runner.run(configs.load(os.path.join(REPO, "configs", "demo.yaml"), overrides))
  versions_after_good = {m: sorted(os.listdir(root / "serving" / m))
                         if (root / "serving" / m).exists() else []
                         for m in ("retrieval", "ranking")}
  crippled_config = configs.load(os.path.join(REPO, "configs", "demo.yaml"), {
      **overrides, "trainer.train_steps": 0, "ranking.train_steps": 0})
  crippled = local_runner.run(crippled_config)
  return crippled_config, good, crippled, versions_after_good, root


def test_good_model_is_blessed_and_pushed(two_runs):
  _, good, _, versions, _ = two_runs
  assert good["retrieval_blessing"]["blessed"] and len(versions["retrieval"]) == 1
  # the ranker is pushed exactly when it beat the retrieval order
  assert len(versions["ranking"]) == int(good["ranking_blessing"]["blessed"])


def test_untrained_model_is_not_blessed_nor_pushed(two_runs, capsys):
  config, good, crippled, versions, root = two_runs
  for name in ("retrieval", "ranking"):
    verdict = crippled[f"{name}_blessing"]
    assert not verdict["blessed"], verdict
    assert verdict["reasons"], verdict  # which threshold failed, by how much
    print(name, verdict["reasons"])
    folder = root / "serving" / name
    assert (sorted(os.listdir(folder)) if folder.exists() else []) == versions[name]
  assert any("hit_rate_lift@10" in r or "hit_rate@10" in r
             for r in crippled["retrieval_blessing"]["reasons"])
  # the ranker re-ranks candidates of a retrieval model that is not served: the gate says so
  assert any("was not blessed" in r for r in crippled["ranking_blessing"]["reasons"])
  # The live model is still the first run's.
  assert crippled["pushed_model"] == good["pushed_model"]
  # MLMD holds the verdict too.
  store = summary.open_store(config.metadata_path)
  assert summary.blessing(store, "Retrieval") == crippled["retrieval_blessing"]


def test_tfma_metrics_equal_numpy_on_the_same_examples(two_runs):
  config, _, _, _, root = two_runs
  store = summary.open_store(config.metadata_path)
  evaluation = min((a for a in store.get_artifacts_by_type("ModelEvaluation")
                    if "/RetrievalValidator/" in a.uri), key=lambda a: a.id)  # the good run
  result = tfma.load_eval_result(evaluation.uri)
  overall = dict(result.slicing_metrics)[()][""][""]
  tfma_hr = overall["hit_rate@10"]["doubleValue"]
  tfma_ndcg = overall["ndcg@10"]["doubleValue"]

  # Independent: the good model's own embeddings, NumPy ranking, training items removed.
  model_artifact = min((a for a in store.get_artifacts_by_type("Model")
                        if "/RetrievalTrainer/" in a.uri), key=lambda a: a.id)
  model = export.load_model(os.path.join(model_artifact.uri, "Format-Serving"))
  examples = standard_artifacts.Examples()
  examples.set_mlmd_artifact(summary.latest_artifact(store, "Examples", "TimeSplitExampleGen"))
  context = {"hour": tf.int64, "device": tf.string}
  train = read_split(examples, "train", {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string})
  test = read_split(examples, "test", {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string,
                                       **context})
  catalogue = model.signatures["item_embeddings"]()
  ids = [b.decode() for b in catalogue["item_ids"].numpy()]
  index = {item: i for i, item in enumerate(ids)}
  queries = model.signatures["query_embedding"](
      user_id=tf.constant(test[feats.USER_ID].to_numpy().astype(object)),
      **{c: tf.constant(test[c].to_numpy()) for c in context})["embedding"].numpy()
  scores = queries @ catalogue["embeddings"].numpy().T
  seen = train.groupby(feats.USER_ID)[feats.ITEM_ID].agg(set)
  ranks = []
  for row, (user, item) in enumerate(zip(test[feats.USER_ID], test[feats.ITEM_ID])):
    target = index[item]
    allowed = np.ones(len(ids), bool)
    allowed[[index[i] for i in seen.get(user, set()) if i != item]] = False
    ranks.append(int(np.sum((scores[row] > scores[row, target]) & allowed)))
  ranks = np.array(ranks)
  hr = np.mean(ranks < 10)
  ndcg = np.mean(np.where(ranks < 10, 1 / np.log2(ranks + 2.0), 0.0))
  print(f"TFMA HR@10 {tfma_hr:.6f} NumPy {hr:.6f}; TFMA NDCG@10 {tfma_ndcg:.6f} NumPy {ndcg:.6f}")
  assert abs(tfma_hr - hr) <= 1e-6 and abs(tfma_ndcg - ndcg) <= 1e-6


def test_report_shows_candidate_vs_baseline_and_writes_plots(two_runs, capsys):
  from recsys_tfx.pipeline import report
  config, _, _, _, _ = two_runs
  store = summary.open_store(config.metadata_path)
  first, last = report.run_ids(store)[0], report.run_ids(store)[-1]
  result = report.report(config.metadata_path)  # the latest run: the crippled model
  out = capsys.readouterr().out
  assert result["run"] == last and "baseline" in result["retrieval"]
  assert "  change" in out and "NOT BLESSED" in out and "worst slice" in out
  for path in result["plots"]:
    assert os.path.getsize(path) > 10_000 and open(path, "rb").read(4) == b"\x89PNG"
  earlier = report.report(config.metadata_path, first)
  assert earlier["run"] == first and "baseline" not in earlier["retrieval"]
  with pytest.raises(ValueError, match="no pipeline run"):
    report.report(config.metadata_path, "not-a-run")
