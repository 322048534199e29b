"""The recommender servable (the whole funnel in one graph) against the two-call funnel,
over a real socket: the toy retrieval and ranking models of tests/serving_toys.py,
composed by trainer/funnel_export.py, all three served by the project's model server in
this process. Same user, context and rules -> the same items, scores and counts."""
import json
import math
import os
import urllib.request

import pandas as pd
import pytest

import serving_toys
from recsys_tfx.schema import canonical as dataset
from recsys_tfx.schema.export_contract import COMPOSITION_FILE
from recsys_tfx.serving import cli_commands
from recsys_tfx.serving.catalogue import Catalogue
from recsys_tfx.serving.client import PredictionClient, RequestFailed
from recsys_tfx.serving.funnel import Funnel, FunnelConfig, FunnelError
from recsys_tfx.serving.model_server import ModelServer
from recsys_tfx.serving.one_call import OneCallFunnel, one_call_unsupported
from recsys_tfx.serving.rules import RulesConfig
from recsys_tfx.trainer import funnel_export, warmup

USERS = ["u-seen", "u-other", "u3", "a-user-nobody-has-seen"]
CONTEXTS = [{}, {"hour": 5}, {"hour": 20, "device": "tv"}]
RULES = [RulesConfig(), RulesConfig(max_per_genre=1), RulesConfig(max_per_genre=0),
         RulesConfig(max_per_genre=2, fresh_boost=0.05),
         RulesConfig(max_per_genre=2, fresh_boost=0.5, boost_mode="multiply")]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """Canonical data for the toy catalogue: u-seen has seen i0..i9, u3 half the items."""
  items = pd.DataFrame(serving_toys.item_table_rows())
  users = ["u-seen"] * 10 + ["u-other"] + ["u3"] * 15
  seen = [f"i{n}" for n in range(10)] + ["i0"] + [f"i{n}" for n in range(0, 30, 2)]
  interactions = pd.DataFrame({"user_id": users, "item_id": seen,
                               "timestamp": list(range(len(users)))})
  data = dataset.canonicalize("csv", "interactions", interactions, items)
  return dataset.write_canonical(data, str(tmp_path_factory.mktemp("data") / "toy"))["dir"]


@pytest.fixture(scope="module")
def model_base(tmp_path_factory, data_dir):
  """retrieval/1, ranking/1, recommender/1 (composing both) and recommender_no_ranker/1."""
  root = serving_toys.model_base(str(tmp_path_factory.mktemp("toy_models")))
  retrieval, ranking = (os.path.join(root, name, "1") for name in ("retrieval", "ranking"))
  composed = funnel_export.export(retrieval, 1, ranking, 1, data_dir,
                                  os.path.join(root, "recommender", "1"))
  assert composed["ranking_live"] == 1
  alone = funnel_export.export(retrieval, 1, None, None, data_dir,
                               os.path.join(root, "recommender_no_ranker", "1"))
  assert alone["ranking_live"] == 0 and alone["ranking_version"] == -1
  return root


@pytest.fixture(scope="module")
def server(model_base):
  server = ModelServer(model_base, port=0, poll_seconds=60, rest_port=0).start()
  yield server
  server.stop(grace=1)


@pytest.fixture(scope="module")
def client(server):
  with PredictionClient(server.address, timeout=30) as c:
    yield c


def _same(one, two):
  assert [c.item_id for c in one.items] == [c.item_id for c in two.items]
  for a, b in zip(one.items, two.items):
    assert a.retrieval_rank == b.retrieval_rank
    assert a.retrieval_score == pytest.approx(b.retrieval_score, rel=1e-6, abs=1e-5)
    assert (math.isnan(a.ranking_score) and math.isnan(b.ranking_score)) or \
        a.ranking_score == pytest.approx(b.ranking_score, rel=1e-6, abs=1e-5)
    assert a.final_score == pytest.approx(b.final_score, rel=1e-6, abs=1e-5)
    assert (a.title, a.genre, a.rules) == (b.title, b.genre, b.rules)
  assert one.rule_counts == two.rule_counts
  assert (one.retrieved, one.ranked) == (two.retrieved, two.ranked)


@pytest.mark.parametrize("rules", RULES, ids=lambda r: f"cap{r.max_per_genre}-"
                         f"boost{r.fresh_boost}{r.boost_mode}")
def test_recommender_equals_the_two_call_funnel(client, data_dir, rules):
  catalogue = Catalogue.from_canonical(data_dir)
  config = FunnelConfig(rules=rules)
  one, two = OneCallFunnel(client, catalogue, config), Funnel(client, catalogue, config)
  assert one.stages().ranking_live and two.stages().ranking_live
  for user in USERS:
    for context in CONTEXTS:
      for k in (1, 7, 20):
        _same(one.recommend(user, k, context), two.recommend(user, k, context))
  # the rules did something in these cases
  rec = one.recommend("u-seen", 10, {"hour": 3})
  assert rec.rule_counts["seen"] > 0
  if rules.fresh_boost:
    assert rec.rule_counts["fresh_boost"] > 0
    assert any(r.startswith("fresh_boost") for c in rec.items for r in c.rules)


def test_recommender_without_a_ranker_serves_the_retrieval_order(client, data_dir):
  catalogue = Catalogue.from_canonical(data_dir)
  one = OneCallFunnel(client, catalogue, model="recommender_no_ranker")
  two = Funnel(client, catalogue, rank=False)
  stages = one.stages()
  assert not stages.ranking_live and "no ranking model" in stages.ranking
  for user in USERS:
    rec = one.recommend(user, 8, {"hour": 7})
    _same(rec, two.recommend(user, 8, {"hour": 7}))
    assert all(math.isnan(c.ranking_score) for c in rec.items) and rec.ranked == 0


def test_composition_names_the_versions(client, server, model_base):
  expected = {"retrieval_version": 1, "ranking_version": 1, "ranking_live": 1,
              "ranking": "ranking v1 re-orders the candidates"}
  assert OneCallFunnel(client).composition() == expected  # the composition signature
  assert client.composition("recommender") == expected  # GetModelMetadata
  with open(os.path.join(model_base, "recommender", "1", COMPOSITION_FILE)) as f:
    assert json.load(f) == expected  # the SavedModel's asset
  with pytest.raises(RequestFailed, match="retrieval version 1 is not a composed recommender"):
    client.composition("retrieval")
  with urllib.request.urlopen(f"http://127.0.0.1:{server.rest_port}/v1/models/recommender/"
                              "metadata", timeout=30) as answer:
    assert json.load(answer)["metadata"]["composition"] == expected  # REST


def test_requests_it_cannot_answer_are_refused(client):
  assert one_call_unsupported(FunnelConfig(rules=RulesConfig(drop_seen=False)))
  with pytest.raises(ValueError, match="always drops seen items"):
    OneCallFunnel(client, config=FunnelConfig(rules=RulesConfig(drop_seen=False)))
  with pytest.raises(FunnelError, match="k must be a positive integer"):
    OneCallFunnel(client).recommend("u0", 0)
  with pytest.raises(ValueError, match=r"\['weather'\] are not inputs"):
    OneCallFunnel(client).recommend("u0", 3, {"weather": "rain"})


def test_warmup_requests_are_written_for_the_server(model_base):
  requests = warmup.read_warmup_requests(os.path.join(model_base, "recommender", "1"))
  assert requests and all(r.predict_log.request.model_spec.name == "recommender"
                          for r in requests)


def _recommend_json(capsys, *args):
  assert cli_commands.main(["recommend", "--json", *args]) == 0
  return json.loads(capsys.readouterr().out)


def test_recommend_uses_the_recommender_when_served(server, data_dir, capsys):
  args = ["--user", "u-seen", "--user", "u3", "--context", "hour=4", "-k", "6",
          "--fresh-boost", "0.1", "--target", server.address, "--data-dir", data_dir]
  one = _recommend_json(capsys, *args)
  assert one["models"]["recommender"] == 1
  assert "one Predict per recommendation" in one["stages"]["retrieval"]
  two = _recommend_json(capsys, *args, "--two-call")
  assert "recommender" not in two["models"]
  for user in ("u-seen", "u3"):
    assert [i["item_id"] for i in one["recommendations"][user]] == \
        [i["item_id"] for i in two["recommendations"][user]]
    assert one["funnel"][user]["rules"] == two["funnel"][user]["rules"]
  # what the one-call funnel cannot do falls back to two calls
  kept = _recommend_json(capsys, *args, "--keep-seen")
  assert "recommender" not in kept["models"]
