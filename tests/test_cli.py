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
  if isinstance(text, bytes):
    path.write_bytes(text)
  else:
    path.write_text(text)
  return f"{scheme}:{path if scheme == 'csv' else path.parent}"


def _rows(users: int, items: int, per_user: int, start: int = 978300760) -> str:
  return "".join(f"u{u},i{(u + k) % items},{start + k}\n"
                 for u in range(users) for k in range(per_user))


HEADER = "user_id,item_id,timestamp\n"


@pytest.mark.parametrize("make_input, expected", [
    (lambda d: "csv:" + str(d / "missing.csv"), "missing.csv"),
    (lambda d: _file(d, "empty.csv", ""), "empty.csv"),
    (lambda d: _file(d, "cols.csv", "user_id,timestamp\nu,1\n"), "item_id"),
    (lambda d: _file(d, "ts.csv", "user_id,item_id,timestamp\nu,i,1\nu,j,yesterday\n"), "line 3"),
    (lambda d: _file(d, "ml/ratings.dat", "1,2,3,4\n", "movielens"), "ratings.dat line 1"),
    (lambda d: "parquet:" + str(d), "unknown data source"),
    # implausible values: refused naming the line, before anything runs
    (lambda d: _file(d, "wrap.csv", HEADER + _rows(20, 30, 5) + "u1,i1,99999999999999999999\n"),
     "line 102: field 'timestamp'"),
    (lambda d: _file(d, "neg.csv", HEADER + _rows(20, 30, 5) + "u1,i1,-5\n"), "line 102"),
    (lambda d: _file(d, "long.csv", HEADER + _rows(20, 30, 5) + "u1," + "i" * 1_000_000 +
                     ",978300760\n"), "at most 256 characters"),
    (lambda d: _file(d, "enc.csv", (HEADER + _rows(20, 30, 5)).encode() + b"u\xff,i,1\n"),
     "line 102: not valid utf-8 text"),
    # too little data: refused saying how much is needed
    (lambda d: _file(d, "one_user.csv", HEADER + _rows(1, 30, 20)), "1 user(s)"),
    (lambda d: _file(d, "short.csv", HEADER + _rows(30, 30, 2)), "0 of them with 3+"),
    (lambda d: _file(d, "few_items.csv", HEADER + _rows(30, 4, 5)), "4 distinct item(s)"),
    (lambda d: _file(d, "dups.csv", HEADER + _rows(5, 30, 5) * 4), "5 user(s)"),
])
def test_bad_input_stops_before_anything_is_written(tmp_path, capsys, make_input, expected):
  spec = make_input(tmp_path)
  code, root = _run(tmp_path, "--data", spec)
  err = capsys.readouterr().err
  assert code == 2
  assert err.startswith("error: ") and expected in err, err
  assert not root.exists()
  assert not (tmp_path / "serving").exists()


def test_duplicates_refused_when_the_config_says_so(tmp_path, capsys):
  config = tmp_path / "c.yaml"
  config.write_text("ingest:\n  duplicates: refuse\n")
  data = _file(tmp_path, "dups.csv", HEADER + _rows(20, 30, 5) * 2)
  code, root = _run(tmp_path, "--config", str(config), "--data", data)
  err = capsys.readouterr().err
  assert code == 2 and "line 102: an exact duplicate of line 2" in err
  assert not root.exists()


@pytest.mark.parametrize("ingest, expected", [("duplicates: keep", "ingest.duplicates"),
                                              ("min_year: 2200", "ingest.min_year"),
                                              ("max_id_length: 0", "ingest.max_id_length")])
def test_bad_ingest_settings_are_named(tmp_path, capsys, ingest, expected):
  config = tmp_path / "c.yaml"
  config.write_text(f"ingest:\n  {ingest}\n")
  code, root = _run(tmp_path, "--config", str(config))
  err = capsys.readouterr().err
  assert code == 2 and expected in err
  assert not root.exists()


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


def test_run_model_option_trains_that_model_instead_of_the_configs_list():
  import argparse
  from recsys_tfx.pipeline import cli_commands, configs
  parser = argparse.ArgumentParser()
  cli_commands.add_commands(parser.add_subparsers())
  demo = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "demo.yaml")
  assert len(configs.load(demo).trainer.candidate_models()) > 1
  args = parser.parse_args(["run", "--config", demo, "--model", "sasrec"])
  config = configs.load(demo, cli_commands.run_overrides(args))
  assert config.trainer.candidate_models() == ["sasrec"]
