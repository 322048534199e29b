"""End to end: the real pipeline (LocalDagRunner, Beam DirectRunner, MLMD on SQLite) on a
small synthetic world, run once for the module; then checks of what it left behind."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2
from tfx.types import standard_artifacts

from recsys_tfx.pipeline import summary
from recsys_tfx.schema import time_split as example_gen_lib
from recsys_tfx.components.evaluation_data import read_split
from recsys_tfx.schema import features as feats

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
COMPONENTS = ["TimeSplitExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator",
              "AnomalyGate", "Transform", "RetrievalTrainer", "RetrievalEvaluator",
              "LatestBlessedRetrievalModel", "RetrievalValidator", "RetrievalBlessingReport",
              "RetrievalPusher", "RankingTrainer", "RankingEvalExamples",
              "LatestBlessedRankingModel", "RankingValidator", "RankingGate", "RankingPusher",
              "RecommenderComposer"]


@pytest.fixture(scope="module")
def run(small_pipeline_run):
  return small_pipeline_run


def test_pushed_model_in_tf_serving_layout(run):
  config, result = run
  base = config.retrieval_push_dir()
  versions = [d for d in os.listdir(base) if d.isdigit()]
  assert len(versions) == 1
  assert os.path.exists(os.path.join(base, versions[0], "saved_model.pb"))
  assert os.path.realpath(result["pushed_model"]) == os.path.realpath(os.path.join(base, versions[0]))


def test_mlmd_records_every_component(run):
  config, _ = run
  store = summary.open_store(config.metadata_path)
  executions = store.get_executions()
  names = {e.custom_properties["__component_id__"].string_value if "__component_id__" in
           e.custom_properties else store.get_execution_types_by_id([e.type_id])[0].name
           for e in executions}
  complete = [e for e in executions
              if e.last_known_state == metadata_store_pb2.Execution.COMPLETE]
  assert len(complete) == len(COMPONENTS), (names, [e.last_known_state for e in executions])
  contexts = {c.name for c in store.get_contexts()}
  for component in COMPONENTS:
    assert any(component in c for c in contexts), (component, contexts)


def test_time_ordered_split(run):
  config, _ = run
  store = summary.open_store(config.metadata_path)
  artifact = standard_artifacts.Examples()
  artifact.set_mlmd_artifact(summary.latest_artifact(store, "Examples", "TimeSplitExampleGen"))
  columns = {feats.USER_ID: tf.string, feats.TIMESTAMP: tf.int64}
  splits = {s: read_split(artifact, s, columns) for s in example_gen_lib.SPLITS}
  last_train = splits["train"].groupby(feats.USER_ID)[feats.TIMESTAMP].max()
  eval_ts = splits["eval"].set_index(feats.USER_ID)[feats.TIMESTAMP]
  test_ts = splits["test"].set_index(feats.USER_ID)[feats.TIMESTAMP]
  assert len(splits["test"]) > 100 and splits["test"][feats.USER_ID].is_unique
  assert (last_train.reindex(eval_ts.index) <= eval_ts).all()
  assert (eval_ts.reindex(test_ts.index) <= test_ts).all()


def test_two_tower_beats_popularity_on_held_out_split(run):
  _, result = run
  metrics = result["metrics"]
  print(json.dumps(metrics, indent=1))
  assert metrics["model/hit_rate@10"] > metrics["popularity/hit_rate@10"]
  assert metrics["model/ndcg@10"] > metrics["popularity/ndcg@10"]


FRESH_PROCESS_CHECK = textwrap.dedent("""
    import json, sys
    import numpy as np
    import scann  # registers the ScaNN ops; without it the SavedModel cannot load
    import tensorflow as tf
    model = tf.saved_model.load(sys.argv[1])
    users = np.array(json.loads(sys.argv[2]), dtype=object)
    top = model.signatures["serving_default"](user_id=tf.constant(users))
    catalogue = model.signatures["item_embeddings"]()
    ctx = {k: tf.constant([-1 if v.dtype.is_integer else "" for _ in users], v.dtype)
           for k, v in model.signatures["query_embedding"].structured_input_signature[1].items()
           if k != "user_id"}
    q = model.signatures["query_embedding"](user_id=tf.constant(users), **ctx)["embedding"].numpy()
    exact = np.argsort(-(q @ catalogue["embeddings"].numpy().T), axis=1)[:, :10]
    ids = catalogue["item_ids"].numpy()
    approx = top["item_ids"].numpy()[:, :10]
    recall = np.mean([len(set(ids[e]) & set(a)) / 10 for e, a in zip(exact, approx)])
    print(json.dumps({"recall": float(recall), "shape": list(top["item_ids"].shape),
                      "scores_shape": list(top["scores"].shape)}))
""")


def test_scann_in_saved_model_agrees_with_brute_force_in_fresh_process(run):
  config, result = run
  data_dir = os.path.join(config.data_dir, "synthetic")
  from recsys_tfx.schema import canonical as dataset
  users = sorted(dataset.read_canonical(data_dir).interactions[feats.USER_ID].unique())[:200]
  out = subprocess.run([sys.executable, "-c", FRESH_PROCESS_CHECK, result["pushed_model"],
                        json.dumps(users)], capture_output=True, text=True, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  report = json.loads(out.stdout.strip().splitlines()[-1])
  print("ScaNN recall@10 vs brute force over 200 users:", report["recall"])
  assert report["shape"] == [200, config.trainer.top_k]
  assert report["scores_shape"] == [200, config.trainer.top_k]
  assert report["recall"] >= 0.9


def test_ranking_model_scores_200_candidates_in_one_call(run):
  config, result = run
  from recsys_tfx.schema import canonical as dataset
  from recsys_tfx.trainer import export
  store = summary.open_store(config.metadata_path)
  trained = summary.latest_artifact(store, "Model", "RankingTrainer")  # pushed or not
  ranker = export.load_model(os.path.join(trained.uri, "Format-Serving"))
  assert [s.decode() for s in ranker.signatures["candidate_sources"]()["sources"].numpy()] \
      == ["two_tower"]
  items = dataset.read_canonical(os.path.join(config.data_dir, "synthetic")).items
  candidates = items[feats.ITEM_ID].astype(str).tolist()[:199] + ["never-seen-item"]
  scores = ranker.signatures["serving_default"](
      user_id=tf.constant(["u0"] * 200), item_id=tf.constant(candidates),
      source_scores=tf.constant(np.linspace(0.5, 0.1, 200)[:, None], tf.float32),
      source_ranks=tf.constant(np.arange(1.0, 201.0)[:, None], tf.float32),
      hour=tf.constant([21] * 200, tf.int64), device=tf.constant(["tv"] * 200))["scores"]
  assert scores.shape == (200,)
  values = scores.numpy()
  assert np.all((values >= 0) & (values <= 1)) and np.std(values) > 0


def test_summary_and_tfma_report_the_same_metrics(run):
  """One metrics module, one tie rule: the RetrievalEvaluator's figures (the run summary)
  and TFMA's (which decide blessing) agree, for the model and for popularity. Scores are
  float32 matrix products computed by NumPy in one and TensorFlow in the other, so a
  user may flip at a rank boundary by rounding: at most one user's worth apart."""
  config, result = run
  from recsys_tfx.pipeline import report
  store = summary.open_store(config.metadata_path)
  evaluation = summary.latest_artifact(store, "ModelEvaluation", "RetrievalValidator")
  tfma_overall = report.load_metrics(evaluation.uri)["candidate"][()]
  metrics = result["metrics"]
  one_user = 1.0 / metrics["users_evaluated"]
  for key in ("hit_rate@10", "ndcg@10", "hit_rate@50", "ndcg@100"):
    assert abs(tfma_overall[key] - metrics[f"model/{key}"]) <= one_user, key
  lift = metrics["model/hit_rate@10"] - metrics["popularity/hit_rate@10"]
  assert abs(tfma_overall["hit_rate_lift@10"] - lift) <= 2 * one_user


def test_the_ranker_is_pushed_exactly_when_the_gate_blesses_it(run):
  config, result = run
  verdict, metrics = result["ranking_blessing"], result["ranking_metrics"]
  lift = metrics["lists/ranker/ndcg@10"] - metrics["lists/retrieval/ndcg@10"]
  assert verdict["blessed"] == (lift > config.validation.min_rerank_lift)
  pushed = os.path.isdir(os.path.join(config.serving_dir, "ranking"))
  assert pushed == verdict["blessed"]
  assert verdict["blessed"] or any("retrieval order" in r for r in verdict["reasons"])
  assert metrics["lists_with_target"] <= metrics["users"]
  assert metrics["users/ranker/ndcg@10"] == pytest.approx(
      metrics["lists/ranker/ndcg@10"] * metrics["lists_with_target"] / metrics["users"])


def test_evaluate_serving_scores_what_the_served_funnel_returns(run, capsys, tmp_path):
  from recsys_tfx import cli
  config, result = run
  out_file = tmp_path / "quality.json"
  config_file = tmp_path / "run.yaml"
  config_file.write_text(
      f"pipeline_root: {config.pipeline_root}\nserving_dir: {config.serving_dir}\n"
      f"synthetic_interactions: {config.synthetic_interactions}\n")
  assert cli.main(["evaluate-serving", "--config", str(config_file),
                   "--out", str(out_file)]) == 0
  printed = capsys.readouterr().out
  report = json.loads(out_file.read_text())
  results = report["results"]
  assert set(results) == {"retrieval order", "funnel", "funnel + rules", "popularity",
                          "itemknn", "ease", "transitions"}
  assert "NDCG@10 vs transitions" in printed  # the planted series: transitions is the bar
  assert report["best_simple_baseline"] == "transitions"
  # what the served retrieval order gets equals the RetrievalEvaluator's test figure up to
  # the seen filter (the served one also drops the eval item), so it is at least as good
  assert results["retrieval order"]["hit_rate@10"] >= result["metrics"]["model/hit_rate@10"] - 0.01
  for stage in ("retrieval order", "funnel", "funnel + rules"):
    assert results[stage]["ndcg@10"] > results["popularity"]["ndcg@10"], stage
  if not result["ranking_blessing"]["blessed"]:  # no ranker served: the funnel is retrieval
    assert results["funnel"] == results["retrieval order"]


def test_the_composed_recommender_answers_as_the_two_call_funnel(run):
  """The recommender servable the run composed, served with what was pushed: one Predict
  gives what retrieval + ranking + the rules give over two, and MLMD says what it holds."""
  from recsys_tfx.pipeline import metadata
  from recsys_tfx.serving.catalogue import Catalogue
  from recsys_tfx.serving.client import PredictionClient
  from recsys_tfx.serving.funnel import Funnel, FunnelConfig
  from recsys_tfx.serving.model_server import ModelServer
  from recsys_tfx.serving.one_call import OneCallFunnel
  from recsys_tfx.serving.rules import RulesConfig
  config, result = run
  retrieval_version = os.path.basename(result["pushed_model"].rstrip("/"))
  store = summary.open_store(config.metadata_path)
  described = metadata.recommender(metadata.snapshot(store))
  assert described.startswith("recommender/") and f"retrieval v{retrieval_version}" in described
  catalogue = Catalogue.from_canonical(os.path.join(config.data_dir, "synthetic"))
  rules = RulesConfig(max_per_genre=2, fresh_boost=0.1)
  server = ModelServer(config.serving_dir, port=0).start()
  try:
    with PredictionClient(server.address, timeout=60) as client:
      one = OneCallFunnel(client, catalogue, FunnelConfig(rules=rules))
      two = Funnel(client, catalogue, FunnelConfig(rules=rules))
      assert one.stages().ranking_live == two.stages().ranking_live
      for user in catalogue.user_ids()[:20] + ["nobody"]:
        context = {"hour": 21, "device": "tv"}
        a, b = one.recommend(user, 10, context), two.recommend(user, 10, context)
        assert [c.item_id for c in a.items] == [c.item_id for c in b.items], user
        assert np.allclose([c.final_score for c in a.items], [c.final_score for c in b.items],
                           rtol=1e-5, atol=1e-5)
        assert a.rule_counts == b.rule_counts
  finally:
    server.stop()


class _Reversed(tf.Module):
  """A planted ranker worse than the retrieval order: it scores each candidate by its
  primary source's rank, so the retrieval order comes out reversed."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
  def score_examples(self, examples):
    ranks = tf.io.parse_example(examples, {"source_ranks": tf.io.FixedLenFeature([1], tf.float32)})
    rank = ranks["source_ranks"][:, 0]
    return {"scores": tf.where(rank > 0, rank, 1e6)}


def test_the_gate_refuses_a_planted_ranker_worse_than_the_retrieval_order(run, tmp_path):
  from recsys_tfx.components.ranking_gate import executor as gate
  config, result = run
  store = summary.open_store(config.metadata_path)
  examples = standard_artifacts.Examples()
  examples.set_mlmd_artifact(summary.latest_artifact(store, "Examples", "RankingEvalExamples"))
  planted = _Reversed()
  tf.saved_model.save(planted, str(tmp_path / "reversed"),
                      signatures={"score_examples": planted.score_examples})
  lists = gate.read_lists(examples)
  figures = gate.evaluate(lists, str(tmp_path / "reversed"), None, result["metrics"]["users_evaluated"])
  assert figures["lists/ranker/ndcg@10"] < figures["lists/retrieval/ndcg@10"]
  # the default gate (the small run's own gate is at lift -1 so serving tests see a ranker)
  reasons = gate.judge(figures, True, 0.0, config.validation.max_ranking_regression)
  assert len(reasons) == 1 and "vs the retrieval order's" in reasons[0]
  # and what the pipeline's own ranker got, judged the same way, is what MLMD recorded
  own = gate.evaluate(lists, os.path.join(summary.latest_artifact(
      store, "Model", "RankingTrainer").uri, "Format-Serving"), None,
      result["metrics"]["users_evaluated"])
  assert own["lists/ranker/ndcg@10"] == pytest.approx(
      result["ranking_metrics"]["lists/ranker/ndcg@10"])
