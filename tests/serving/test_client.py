"""The gRPC client, the funnel and `recommend` over a real socket: the project's model
server in this process on a free port, serving the toy models of tests/serving_toys.py
(no pipeline run needed)."""
import json
import re
import socket

import grpc
import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from tensorflow.core.framework import types_pb2

import serving_toys
from recsys_tfx.schema import canonical as dataset
from recsys_tfx.serving import cli_commands, client as client_lib
from recsys_tfx.serving.catalogue import Catalogue
from recsys_tfx.serving.client import PredictionClient, RequestFailed, ServerUnavailable
from recsys_tfx.serving.funnel import Funnel, FunnelConfig
from recsys_tfx.serving.model_server import ModelServer
from recsys_tfx.serving.rules import RulesConfig


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  return serving_toys.model_base(str(tmp_path_factory.mktemp("toy_models")))


@pytest.fixture(scope="module")
def server(model_base):
  server = ModelServer(model_base, port=0, poll_seconds=60).start()
  yield server
  server.stop(grace=1)


@pytest.fixture
def client(server):
  with PredictionClient(server.address, timeout=20) as c:
    yield c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  """Canonical data for the toy catalogue; user u-seen has seen i0..i9."""
  items = pd.DataFrame(serving_toys.item_table_rows())
  interactions = pd.DataFrame({"user_id": ["u-seen"] * 10 + ["u-other"],
                               "item_id": [f"i{n}" for n in range(10)] + ["i0"],
                               "timestamp": list(range(11))})
  data = dataset.canonicalize("csv", "interactions", interactions, items)
  return dataset.write_canonical(data, str(tmp_path_factory.mktemp("data") / "toy"))["dir"]


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


# --- tensors -------------------------------------------------------------------------------

def test_encode_uses_the_signature_dtype():
  proto = client_lib.encode([23, "7"], types_pb2.DT_INT64)
  assert proto.dtype == types_pb2.DT_INT64
  np.testing.assert_array_equal(tf.make_ndarray(proto), np.array([23, 7], np.int64))
  strings = client_lib.encode(["u0", b"u1"], types_pb2.DT_STRING)
  assert list(strings.string_val) == [b"u0", b"u1"]
  assert [d.size for d in strings.tensor_shape.dim] == [2]
  with pytest.raises(ValueError, match="expected an integer, got 'noon'"):
    client_lib.encode(["noon"], types_pb2.DT_INT64)


def test_decode_reads_typed_fields_and_tensor_content():
  values = np.arange(6, dtype=np.float32).reshape(2, 3)
  content = tf.make_tensor_proto(values)  # tensor_content
  assert content.tensor_content
  typed = tf.make_tensor_proto(values)
  typed.ClearField("tensor_content")
  typed.float_val.extend(values.ravel())
  for proto in (content, typed):
    np.testing.assert_array_equal(client_lib.decode(proto), values)


# --- calls ---------------------------------------------------------------------------------

def test_retrieve_matches_the_saved_model(client, model_base):
  item_ids, scores = client.retrieve("u0", {"hour": "23", "device": "tv"}, k=5)
  model = tf.saved_model.load(f"{model_base}/retrieval/1")
  direct = model.signatures["recommend_with_context"](
      user_id=tf.constant(["u0"]), hour=tf.constant([23], tf.int64), device=tf.constant(["tv"]))
  assert item_ids == [i.decode() for i in direct["item_ids"].numpy()[0, :5]]
  np.testing.assert_allclose(scores, direct["scores"].numpy()[0, :5])
  assert scores[0] == pytest.approx(123.0)  # hour 23 and device tv reached the model


def test_context_not_given_is_sent_as_unknown(client):
  item_ids, scores = client.retrieve("u0")
  assert len(item_ids) == serving_toys.K
  assert scores[0] == pytest.approx(-1.0)  # hour -1, device ""


def test_score_sends_one_row_per_candidate_in_one_predict(client, monkeypatch):
  calls = []
  predict = client.predict
  monkeypatch.setattr(client, "predict", lambda *a, **kw: calls.append(a) or predict(*a, **kw))
  sources = np.ones((3, 1), np.float32)
  scores = client.score("u0", ["i3", "i12", "i7"], {"hour": 2, "device": "tv"},
                        source_scores=sources, source_ranks=sources)
  assert len(calls) == 1
  np.testing.assert_allclose(scores, [31.003, 31.012, 31.007], rtol=1e-6)
  assert client.score("u0", []).shape == (0,)
  with pytest.raises(ValueError, match="needs their source scores and ranks"):
    client.score("u0", ["i3"], {"hour": 2})


def test_candidates_carry_each_sources_scores_and_ranks(client):
  found = client.candidates("u0", {"hour": 23, "device": "tv"})
  assert len(found.item_ids) == serving_toys.K
  assert found.source_ranks[:, 0].tolist() == list(range(1, serving_toys.K + 1))
  np.testing.assert_allclose(found.source_scores[:, 0], found.scores)
  assert client.sources("retrieval") == client.sources("ranking") == ["toy"]


def test_status_and_metadata(client):
  assert client.model_status("retrieval") == [
      {"version": 1, "state": "AVAILABLE", "error_code": 0, "error_message": ""}]
  assert client.available_version("ranking") == 1
  assert client.available_version("nope") is None
  signatures = client.model_metadata("retrieval")
  assert {"serving_default", "recommend_with_context"} <= set(signatures)
  assert client.signature_inputs("ranking", "serving_default") == {
      "user_id": types_pb2.DT_STRING, "item_id": types_pb2.DT_STRING,
      "source_scores": types_pb2.DT_FLOAT, "source_ranks": types_pb2.DT_FLOAT,
      "hour": types_pb2.DT_INT64, "device": types_pb2.DT_STRING}


def test_unknown_context_feature_is_refused_before_any_predict(client):
  with pytest.raises(ValueError, match=r"\['weather'\] are not inputs of "
                                       r"retrieval/recommend_with_context"):
    client.retrieve("u0", {"weather": "rain"})


def test_server_rejection_names_call_code_and_message(client):
  with pytest.raises(RequestFailed) as raised:
    client.predict("nope", {"user_id": client_lib.encode(["u"], types_pb2.DT_STRING)})
  assert raised.value.code == grpc.StatusCode.NOT_FOUND
  assert str(raised.value) == (f"Predict(nope/serving_default) at {client.target} failed: "
                               "NOT_FOUND: Servable not found for request: Latest(nope)")
  with pytest.raises(RequestFailed, match="has no signature 'nope'"):
    client.signature_inputs("retrieval", "nope")


def test_no_server_is_server_unavailable():
  target = f"127.0.0.1:{free_port()}"
  with PredictionClient(target, timeout=5) as c:
    with pytest.raises(ServerUnavailable, match=f"no model server answers at {target}"):
      c.retrieve("u0")


# --- the funnel over gRPC ------------------------------------------------------------------

def test_funnel_over_grpc_drops_seen_caps_genres_and_cold_starts(client, data_dir):
  catalogue = Catalogue.from_canonical(data_dir)
  funnel = Funnel(client, catalogue, FunnelConfig(rules=RulesConfig(max_per_genre=2)))
  rec = funnel.recommend("u-seen", k=8, context={"hour": 5})
  got = [c.item_id for c in rec.items]
  assert not set(got) & catalogue.seen("u-seen")
  genres = [c.genre for c in rec.items]
  assert all(genres.count(g) <= 2 for g in genres) and len(got) == len(set(got))
  assert all(c.title.startswith("Toy ") for c in rec.items)
  finals = [c.final_score for c in rec.items]
  assert finals == sorted(finals, reverse=True)
  cold = funnel.recommend("a-user-nobody-has-seen", k=5)
  assert len(cold.items) == 5


def test_each_model_gets_only_the_context_it_takes(server):
  with PredictionClient(server.address, timeout=20,
                        ranking_model="ranking_hour_only") as client:
    funnel = Funnel(client, config=FunnelConfig(rules=RulesConfig(max_per_genre=0)))
    rec = funnel.recommend("u0", k=3, context={"hour": 2, "device": "tv"})
    assert all(c.retrieval_score > 100 for c in rec.items)  # device reached retrieval
    assert all(30 < c.ranking_score < 31 for c in rec.items)  # and not the ranker
    with pytest.raises(ValueError, match=r"\['weather'\] are not inputs of the models"):
      funnel.recommend("u0", k=3, context={"weather": "rain"})


# --- recsys recommend ----------------------------------------------------------------------

def recommend(capsys, *args):
  code = cli_commands.main(["recommend", *args])
  out = capsys.readouterr()
  return code, out.out, out.err


def test_recommend_prints_items_with_titles_and_stage_scores(server, data_dir, capsys):
  code, out, err = recommend(capsys, "--user", "u-seen", "--context", "hour=3", "-k", "4",
                             "--target", server.address, "--data-dir", data_dir)
  assert code == 0, err
  assert "retrieval v1, ranking v1" in out
  rows = [line for line in out.splitlines() if re.match(r"\s+\d+\. ", line)]
  assert len(rows) == 4 and all("Toy " in row for row in rows)
  assert "context: hour=3" in out and "ranking" in out and "retrieval" in out


def test_recommend_json(server, data_dir, capsys):
  code, out, err = recommend(capsys, "--user", "u-seen", "--user", "stranger", "-k", "3",
                             "--json", "--target", server.address, "--data-dir", data_dir,
                             "--fresh-boost", "100")
  assert code == 0, err
  result = json.loads(out)
  assert result["models"] == {"retrieval": 1, "ranking": 1}
  assert [len(result["recommendations"][u]) for u in ("u-seen", "stranger")] == [3, 3]
  item = result["recommendations"]["stranger"][0]
  assert item["rules"] == ["fresh_boost(+100)"]  # the newest items lead after a big boost
  assert item["final_score"] == pytest.approx(item["ranking_score"] + 100)
  assert result["funnel"]["u-seen"]["rules"]["seen"] >= 0


@pytest.mark.parametrize("k, message", [("0", "k must be a positive integer"),
                                        ("21", "exceeds the 20 candidates the retrieval")])
def test_recommend_rejects_k_out_of_range(server, capsys, k, message):
  code, _, err = recommend(capsys, "--user", "u0", "-k", k, "--target", server.address)
  assert code == 2 and message in err


def test_recommend_without_a_server_says_so(capsys):
  code, _, err = recommend(capsys, "--user", "u0", "--target", f"127.0.0.1:{free_port()}")
  assert code == 2
  assert "no model server answers at 127.0.0.1:" in err and "recsys serve" in err


def test_recommend_bad_context(server, capsys):
  code, _, err = recommend(capsys, "--user", "u0", "--context", "hour", "--target",
                           server.address)
  assert code == 2 and "NAME=VALUE" in err
  code, _, err = recommend(capsys, "--user", "u0", "--context", "hour=noon", "--target",
                           server.address)
  assert code == 2 and "hour='noon'" in err and "expected an integer" in err
