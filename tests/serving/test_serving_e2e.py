"""gRPC inference end to end: the real pipeline's pushed retrieval + ranking models, with
warm-up records the export wrote, served by `serve` in its own process
on a free port, and called through the client, the funnel and `recommend`."""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from pipeline_run import REPO
from recsys_tfx.serving import cli_commands
from recsys_tfx.serving.catalogue import Catalogue
from recsys_tfx.serving.client import PredictionClient
from recsys_tfx.serving.funnel import Funnel, FunnelConfig
from recsys_tfx.serving.rules import RulesConfig

pytestmark = pytest.mark.e2e

K = 10
CONTEXT = {"hour": 23, "device": "tv"}


@pytest.fixture(scope="module")
def run(small_pipeline_run):
  return small_pipeline_run


@pytest.fixture(scope="module")
def data_dir(run):
  config, _ = run
  return os.path.join(config.data_dir, "synthetic")


@pytest.fixture(scope="module")
def catalogue(data_dir):
  return Catalogue.from_canonical(data_dir)


def _version_dir(base: str, name: str) -> str:
  versions = [d for d in os.listdir(os.path.join(base, name)) if d.isdigit()]
  assert len(versions) == 1, versions
  return os.path.join(base, name, versions[0])


@pytest.fixture(scope="module")
def model_base(run, tmp_path_factory):
  """A copy of the pushed models, each with the warm-up records its export wrote. They are
  not rewritten here: a pushed version's completion manifest covers every file."""
  config, _ = run
  base = str(tmp_path_factory.mktemp("models") / "serving_models")
  shutil.copytree(config.serving_dir, base)
  return base


@pytest.fixture(scope="module")
def server(model_base, tmp_path_factory):
  """`serve` in a subprocess on port 0; yields (address, log path)."""
  run_dir = tmp_path_factory.mktemp("server")
  ready, log_path = run_dir / "ready.json", run_dir / "server.log"
  command = [sys.executable, "-m", "serving.cli_commands", "serve", "--model-base",
             model_base, "--port", "0", "--rest-api-port", "0", "--ready-file", str(ready)]
  with open(log_path, "w") as log:
    process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
  try:
    deadline = time.monotonic() + 180
    while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
      time.sleep(0.1)
    assert ready.exists(), f"the server did not start:\n{log_path.read_text()}"
    yield f"127.0.0.1:{json.loads(ready.read_text())['port']}", log_path
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, log_path.read_text()
  finally:
    if process.poll() is None:
      process.kill()
      process.wait()


@pytest.fixture(scope="module")
def client(server):
  with PredictionClient(server[0], timeout=30) as c:
    yield c


@pytest.fixture(scope="module")
def models(model_base):
  import scann  # noqa: F401  (the retrieval model's ScaNN ops)
  return {name: tf.saved_model.load(_version_dir(model_base, name))
          for name in ("retrieval", "ranking")}


def test_server_replays_the_warmup_records_of_both_models(server):
  log = server[1].read_text()
  assert re.search(r"retrieval version \d+: replayed 4 warm-up request\(s\)", log), log
  assert re.search(r"ranking version \d+: replayed 2 warm-up request\(s\)", log), log


def test_predict_equals_the_saved_models_called_directly(client, models):
  users = ["u0", "u1", "someone-new"]
  got = client.predict("retrieval", {"user_id": users, "hour": [23, -1, 8],
                                     "device": ["tv", "", "tv"]}, "recommend_with_context")
  direct = models["retrieval"].signatures["recommend_with_context"](
      user_id=tf.constant(users), hour=tf.constant([23, -1, 8], tf.int64),
      device=tf.constant(["tv", "", "tv"]))
  np.testing.assert_array_equal(got["item_ids"], direct["item_ids"].numpy())
  np.testing.assert_allclose(got["scores"], direct["scores"].numpy(), rtol=1e-6)

  found = client.candidates("u0", CONTEXT)
  item_ids = [i for i in found.item_ids if i]  # the union is padded with ""
  rows = len(item_ids)
  sources = {"source_scores": found.source_scores[:rows], "source_ranks": found.source_ranks[:rows]}
  scores = client.score("u0", item_ids, CONTEXT, **sources)
  direct = models["ranking"].signatures["serving_default"](
      user_id=tf.constant(["u0"] * rows), item_id=tf.constant(item_ids),
      hour=tf.constant([23] * rows, tf.int64), device=tf.constant(["tv"] * rows),
      **{k: tf.constant(v) for k, v in sources.items()})
  np.testing.assert_allclose(scores, direct["scores"].numpy(), rtol=1e-5)


def recommend(capsys, *args):
  code = cli_commands.main(["recommend", *args])
  out = capsys.readouterr()
  return code, out.out, out.err


def test_recommend_json_has_k_items_with_titles_and_stage_scores(server, data_dir, catalogue,
                                                                 capsys):
  code, out, err = recommend(capsys, "--user", "u0", "--context", "hour=23", "--context",
                             "device=tv", "-k", str(K), "--json", "--target", server[0],
                             "--data-dir", data_dir)
  assert code == 0, err
  items = json.loads(out)["recommendations"]["u0"]
  assert len(items) == K and len({i["item_id"] for i in items}) == K
  for item in items:
    assert item["title"] == catalogue.item(item["item_id"]).title != ""
    assert {"retrieval_score", "ranking_score", "final_score", "rules"} <= set(item)
  assert not {i["item_id"] for i in items} & catalogue.seen("u0")
  finals = [i["final_score"] for i in items]
  assert finals == sorted(finals, reverse=True)


def test_recommend_text(server, data_dir, capsys):
  code, out, err = recommend(capsys, "--user", "u1", "--target", server[0],
                             "--data-dir", data_dir)
  assert code == 0, err
  assert "retrieval v" in out and "ranking v" in out
  assert sum(1 for line in out.splitlines() if line.lstrip()[:3].strip(". ").isdigit()) == K


def test_unknown_user_gets_recommendations(server, data_dir, capsys):
  code, out, err = recommend(capsys, "--user", "nobody-knows-me", "--json", "--target",
                             server[0], "--data-dir", data_dir)
  assert code == 0, err
  assert len(json.loads(out)["recommendations"]["nobody-knows-me"]) == K


@pytest.mark.parametrize("k, message", [
    ("0", "k must be a positive integer"), ("-1", "k must be a positive integer"),
    ("100000", "candidates the retrieval model returns")])  # more than trainer.top_k
def test_k_out_of_range_is_a_clear_error(server, capsys, k, message):
  code, _, err = recommend(capsys, "--user", "u0", "-k", k, "--target", server[0])
  assert code == 2 and message in err, err


def test_seen_items_never_appear_and_the_genre_cap_holds(client, catalogue):
  funnel = Funnel(client, catalogue, FunnelConfig(rules=RulesConfig(max_per_genre=2)))
  heavy = sorted((u for u in [f"u{n}" for n in range(200)] if catalogue.seen(u)),
                 key=lambda u: -len(catalogue.seen(u)))[:20]
  dropped = 0
  for user in heavy:
    rec = funnel.recommend(user, k=K, context=CONTEXT)
    got = [c.item_id for c in rec.items]
    assert not set(got) & catalogue.seen(user), user
    genres = [c.genre for c in rec.items if c.genre]
    assert max(genres.count(g) for g in genres) <= 2, (user, genres)
    assert len(got) == K  # 100 candidates span enough genres for 10 items at 2 each
    dropped += rec.rule_counts["seen"]
  assert dropped > 0  # the heaviest users' seen items were among the candidates
