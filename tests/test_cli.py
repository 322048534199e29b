"""`recsys` on bad input: a clear one-line error, exit code 2, and nothing written."""
import os

import pytest

from recsys_tfx import cli
from recsys_tfx.schema.features import curated_schema_file


def _run(tmp_path, *args):
  root = tmp_path / "pipeline"
  code = cli.main(["run", "--pipeline-root", str(root), "--serving-dir",
                   str(tmp_path / "serving"), *args])
  return code, root


def _file(directory, name, text, scheme="csv"):
  path = directory / name
  path.parent.mkdir(exist_ok=True)
  path.write_text(text)
  return f"{scheme}:{path if scheme == 'csv' else path.parent}"


@pytest.mark.parametrize("make_input, expected", [
    (lambda d: "csv:" + str(d / "missing.csv"), "missing.csv"),
    (lambda d: _file(d, "empty.csv", ""), "empty.csv"),
    (lambda d: _file(d, "cols.csv", "user_id,timestamp\nu,1\n"), "item_id"),
    (lambda d: _file(d, "ts.csv", "user_id,item_id,timestamp\nu,i,1\nu,j,yesterday\n"), "line 3"),
    (lambda d: _file(d, "ml/ratings.dat", "1,2,3,4\n", "movielens"), "ratings.dat line 1"),
    (lambda d: "parquet:" + str(d), "unknown data source"),
])
def test_bad_input_stops_before_anything_is_written(tmp_path, capsys, make_input, expected):
  spec = make_input(tmp_path)
  code, root = _run(tmp_path, "--data", spec)
  err = capsys.readouterr().err
  assert code == 2
  assert err.startswith("error: ") and expected in err, err
  assert not root.exists()
  assert not (tmp_path / "serving").exists()


def test_unknown_config_key_is_named(tmp_path, capsys):
  config = tmp_path / "c.yaml"
  config.write_text("pipeline_name: x\ntrainer:\n  epoch: 3\n")
  code, root = _run(tmp_path, "--config", str(config))
  err = capsys.readouterr().err
  assert code == 2 and "'epoch'" in err and "epochs" in err
  assert not root.exists()


def test_schema_that_the_data_cannot_fill_is_rejected(tmp_path, capsys):
  data = tmp_path / "i.csv"
  data.write_text("user_id,item_id,timestamp\n" + "".join(f"u{i % 5},i{i},{i}\n" for i in range(40)))
  synthetic_schema = curated_schema_file("synthetic")
  code, root = _run(tmp_path, "--data", f"csv:{data}", "--schema", synthetic_schema)
  err = capsys.readouterr().err
  assert code == 2 and "device" in err and "age" in err
  assert not root.exists()


def test_recommend_without_a_server_or_pushed_models(tmp_path, capsys):
  code = cli.main(["recommend", "--user", "u1", "--target", "127.0.0.1:1", "--timeout", "2",
                   "--model-base", str(tmp_path / "none")])
  assert code == 2 and "recsys serve" in capsys.readouterr().err
