"""RecommenderComposer: composes the live retrieval and ranking versions into a new
recommender version (complete before it is visible), only when what is live changed; and
a hot swap of either stage, with a server answering recommendations throughout, ends in a
recommender of the new versions with no failed request."""
import json
import os
import threading
import time

import pandas as pd
import pytest
from tfx.types import standard_artifacts

import serving_toys
from recsys_tfx.components.atomic_pusher.executor import push_version
from recsys_tfx.components.recommender_composer import executor
from recsys_tfx.components.recommender_composer.component import RecommenderComposer
from recsys_tfx.schema import canonical as dataset
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import push_manifest
from recsys_tfx.serving.client import PredictionClient
from recsys_tfx.serving.model_server import ModelServer
from recsys_tfx.serving.one_call import OneCallFunnel


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  items = pd.DataFrame(serving_toys.item_table_rows())
  interactions = pd.DataFrame({"user_id": ["u1"] * 5 + ["u2"] * 3,
                               "item_id": [f"i{n}" for n in (0, 1, 2, 3, 4, 5, 6, 7)],
                               "timestamp": list(range(8))})
  data = dataset.canonicalize("csv", "interactions", interactions, items)
  return dataset.write_canonical(data, str(tmp_path_factory.mktemp("data") / "toy"))["dir"]


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
  """Saved toy models to push: {"retrieval": dir, "ranking": dir}."""
  root = tmp_path_factory.mktemp("toys")
  return {"retrieval": serving_toys.save_retrieval(str(root / "retrieval")),
          "ranking": serving_toys.save_ranking(str(root / "ranking"))}


def push(toys, serving_dir, model: str, version: int) -> None:
  push_version(toys[model], os.path.join(serving_dir, model), str(version))


def versions(serving_dir, model: str = contract.RECOMMENDER_MODEL):
  base = os.path.join(serving_dir, model)
  return sorted(n for n in os.listdir(base)) if os.path.isdir(base) else []


def test_composes_only_when_what_is_live_changed(tmp_path, toys, data_dir):
  serving = str(tmp_path / "serving")
  assert executor.compose(serving, data_dir, str(tmp_path / "w"))["why"] == \
      "no retrieval model is served"
  push(toys, serving, "retrieval", 1)
  first = executor.compose(serving, data_dir, str(tmp_path / "w"))
  assert first["pushed"] == 1 and first["composition"]["ranking"].startswith("off: no ranking")
  assert versions(serving) == [str(first["version"])]  # no staging directory left behind
  with open(os.path.join(first["destination"], push_manifest.MARKER)) as f:
    assert contract.COMPOSITION_FILE in json.load(f)["files"]
  again = executor.compose(serving, data_dir, str(tmp_path / "w"))
  assert again["pushed"] == 0 and "already composes retrieval v1" in again["why"]

  push(toys, serving, "ranking", 2)
  second = executor.compose(serving, data_dir, str(tmp_path / "w"))
  assert second["pushed"] == 1 and second["version"] > first["version"]
  assert second["composition"] == {"retrieval_version": 1, "ranking_version": 2,
                                   "ranking_live": 1,
                                   "ranking": "ranking v2 re-orders the candidates"}


def test_executor_records_the_composition(tmp_path, toys, data_dir):
  serving = str(tmp_path / "serving")
  push(toys, serving, "retrieval", 3)
  push(toys, serving, "ranking", 4)
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / "artifact")
  executor.Executor().Do({}, {"pushed_model": [pushed]},
                         {"serving_dir": serving, "data_dir": data_dir})
  assert pushed.get_int_custom_property("pushed") == 1
  assert pushed.get_int_custom_property("retrieval_version") == 3
  assert pushed.get_int_custom_property("ranking_version") == 4
  assert pushed.get_string_custom_property("pushed_destination").startswith(
      os.path.join(serving, "recommender"))


def test_component_refuses_empty_directories():
  with pytest.raises(ValueError, match="serving_dir"):
    RecommenderComposer(retrieval_pushed=None, serving_dir="", data_dir="d")


def test_hot_swap_of_either_stage_gives_a_new_recommender_and_no_failed_request(
    tmp_path, toys, data_dir):
  serving = str(tmp_path / "serving")
  push(toys, serving, "retrieval", 1)
  push(toys, serving, "ranking", 1)
  executor.compose(serving, data_dir, str(tmp_path / "w"))
  server = ModelServer(serving, port=0, poll_seconds=0.2).start()
  errors, answers, stop = [], [], threading.Event()

  def hammer():
    with PredictionClient(server.address, timeout=30) as client:
      funnel = OneCallFunnel(client)
      while not stop.is_set():
        try:
          answers.append(funnel.recommend("u1", 5, {"hour": 3}).items[0].item_id)
        except Exception as e:  # noqa: BLE001  (any failure counts)
          errors.append(repr(e))

  def served_composition(client):
    return OneCallFunnel(client).composition()

  threads = [threading.Thread(target=hammer) for _ in range(3)]
  try:
    for t in threads:
      t.start()
    with PredictionClient(server.address, timeout=30) as client:
      for model, version in (("ranking", 2), ("retrieval", 3)):
        push(toys, serving, model, version)
        result = executor.compose(serving, data_dir, str(tmp_path / "w"))
        assert result["pushed"] == 1
        deadline = time.monotonic() + 60
        while served_composition(client)[f"{model}_version"] != version:
          assert time.monotonic() < deadline, f"the server never swapped to {model} v{version}"
          time.sleep(0.2)
  finally:
    stop.set()
    for t in threads:
      t.join()
    server.stop(grace=1)
  assert errors == [] and len(answers) > 10
  assert len(versions(serving)) == 3
