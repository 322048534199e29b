"""MLMD on a real MySQL-compatible server (MariaDB, started here on loopback): two runs of
a minimal real TFX pipeline are recorded there, and `recsys metadata` reads them back.

The pipeline is this project's first two components (ImportSchemaGen and
TimeSplitExampleGen on a small synthetic world, wired as in create_pipeline): the full
pipeline twice would take minutes, and MySQL only has to hold what TFX writes."""
import json
import os

import pytest
import yaml

import mariadb_server
from recsys_tfx import cli

pytestmark = pytest.mark.e2e

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def recsys(*argv) -> int:
  """The `recsys` command, in-process."""
  return cli.main(list(argv))


@pytest.fixture(scope="module")
def mysql():
  reason = mariadb_server.missing_reason()
  if reason:
    pytest.skip(f"no MySQL-compatible server: {reason}")
  with mariadb_server.MariaDB() as server:
    yield server


def minimal_pipeline(root: str, connection):
  from tfx import v1 as tfx
  from recsys_tfx.components.time_split_example_gen.component import TimeSplitExampleGen
  from recsys_tfx.components.ingest import sources
  from recsys_tfx.schema import canonical as dataset
  from recsys_tfx.pipeline import configs
  config = configs.load(os.path.join(REPO, "configs", "demo.yaml"))
  data = sources.load_source("synthetic", synthetic_interactions=2000, seed=0)
  data_dir = dataset.write_canonical(data, os.path.join(root, "data", data.name))["dir"]
  schema_file = config.schema_file(data.schema_name)
  example_gen = TimeSplitExampleGen(
      input_base=data_dir, schema_file=schema_file, seed=0,
      min_interactions_to_hold_out=config.min_interactions_to_hold_out)
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
  return tfx.dsl.Pipeline(
      pipeline_name="recsys-mysql-check", pipeline_root=root,
      components=[schema_gen, example_gen], enable_cache=False,
      metadata_connection_config=tfx.orchestration.metadata.mysql_metadata_connection_config(
          host=connection["host"], port=connection["port"], database=connection["database"],
          username=connection["user"], password=connection["password"]),
      beam_pipeline_args=["--direct_running_mode=in_memory"])


@pytest.fixture(scope="module")
def two_runs(mysql, tmp_path_factory):
  from tfx import v1 as tfx
  root = str(tmp_path_factory.mktemp("mysql-runs"))
  for _ in range(2):
    tfx.orchestration.LocalDagRunner().run(minimal_pipeline(root, mysql.connection()))
  config = os.path.join(root, "mysql.yaml")
  with open(config, "w") as f:
    yaml.safe_dump(mysql.connection(), f)
  return config


def test_two_runs_recorded_in_mysql(two_runs, capsys):
  assert recsys("metadata", "runs", "--mysql-config", two_runs, "--json") == 0
  runs = json.loads(capsys.readouterr().out)
  assert len(runs) == 2 and runs[0]["run_id"] != runs[1]["run_id"]
  for run in runs:
    assert run["pipeline"] == "recsys-mysql-check" and run["status"] == "COMPLETE"
    assert sorted(c["component"] for c in run["components"]) == [
        "ImportSchemaGen", "TimeSplitExampleGen"]
  assert recsys("metadata", "runs", "--mysql-config", two_runs) == 0
  assert capsys.readouterr().out.count("recsys-mysql-check  COMPLETE") == 2


def test_artifacts_of_each_run_in_mysql(two_runs, capsys):
  assert recsys("metadata", "artifacts", "--type", "Examples", "--mysql-config", two_runs,
                "--json") == 0
  examples = json.loads(capsys.readouterr().out)
  assert len(examples) == 2 and len({e["run_id"] for e in examples}) == 2
  assert all(e["producer"] == "TimeSplitExampleGen" and e["properties"]["span"] == 0
             for e in examples)


def test_wrong_password_is_one_line(mysql, tmp_path, capsys):
  config = tmp_path / "mysql.yaml"
  config.write_text(yaml.safe_dump({**mysql.connection(), "password": "wrong"}))
  assert recsys("metadata", "runs", "--mysql-config", str(config)) == 2
  err = capsys.readouterr().err.strip()
  assert len(err.splitlines()) == 1 and err.startswith("error: cannot open ML Metadata at mysql")
