"""`recsys compare-rankers` leaves no temporary directory behind, whether it finishes or
fails (its models go to a TemporaryDirectory unless an out_root is given)."""
import os
import tempfile

import pytest

from recsys_tfx.pipeline import compare_rankers, configs


def _leftovers(root) -> list:
  return [n for n in os.listdir(root) if n.startswith("compare-rankers-")]


@pytest.fixture
def temp_root(tmp_path, monkeypatch):
  root = tmp_path / "tmp"
  root.mkdir()
  monkeypatch.setattr(tempfile, "tempdir", str(root))
  return root


def test_temporary_directory_is_removed_after_a_comparison(temp_root, monkeypatch):
  written = []

  def train(inputs, custom_config, out_dir):
    os.makedirs(out_dir)
    with open(os.path.join(out_dir, "model"), "w") as f:
      f.write("a model")
    written.append(out_dir)
    return out_dir

  metrics = {"lists/ranker/ndcg@10": 0.5, "lists/retrieval/ndcg@10": 0.4}
  ranking_examples = type("E", (), {"get_int_custom_property": lambda self, name: 7})()
  monkeypatch.setattr(compare_rankers.summary, "open_store", lambda path: object())
  monkeypatch.setattr(compare_rankers, "run_inputs",
                      lambda store: {"ranking_examples": ranking_examples})
  monkeypatch.setattr(compare_rankers.summary, "latest_data_dir", lambda store: "data")
  monkeypatch.setattr(compare_rankers.gate, "read_lists", lambda examples: [])
  monkeypatch.setattr(compare_rankers, "train_ranker", train)
  monkeypatch.setattr(compare_rankers.gate, "evaluate", lambda *a: dict(metrics))
  results = compare_rankers.compare(configs.load(None), ["wide_deep", "dcn"])
  assert set(results) == {"wide_deep", "dcn"} and len(written) == 2
  assert all(str(temp_root) in w for w in written)
  assert _leftovers(temp_root) == []


def test_temporary_directory_is_removed_when_the_comparison_fails(temp_root, monkeypatch):
  def no_store(path):
    assert _leftovers(temp_root), "the models' directory exists while comparing"
    raise FileNotFoundError("no ML Metadata store")

  monkeypatch.setattr(compare_rankers.summary, "open_store", no_store)
  with pytest.raises(FileNotFoundError):
    compare_rankers.compare(configs.load(None), ["wide_deep"])
  assert _leftovers(temp_root) == []
