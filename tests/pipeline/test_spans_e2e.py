"""Nightly runs over dated spans, end to end (LocalDagRunner, small): run 1 reads the
newest spans of a window, run 2 finds no new span and stops early (exit code 0, one
line), run 3 after a new day's span reads it; ML Metadata's Examples carry the spans
and `recsys metadata runs / lineage` show them; the trainer's TensorBoard logs are where
`recsys report` says."""
import datetime
import json
import os

import pandas as pd
import pytest

from pipeline_run import REPO
from recsys_tfx import cli

pytestmark = pytest.mark.e2e

DAYS = ("2026-11-30", "2026-12-01", "2026-12-02")


def span_number(day: str) -> int:
  return (datetime.date.fromisoformat(day) - datetime.date(1970, 1, 1)).days


def write_daily_spans(root: str):
  """~2,400 synthetic interactions cut by time into three daily span directories (each
  canonical csv: interactions.csv + items.csv); returns {day: directory}."""
  from recsys_tfx.components.ingest import synthetic
  data = synthetic.generate_by_size(2400, seed=0)
  # the canonical interactions columns only (the synthetic world's `device` context is
  # not in the curated interactions schema a csv source is typed by)
  interactions = data.interactions[["user_id", "item_id", "timestamp", "hour", "label"]]
  interactions = interactions.sort_values("timestamp").reset_index(drop=True)
  chunks = [interactions.iloc[i::3] for i in range(3)]  # every span: every user, all times
  out = {}
  for day, chunk in zip(DAYS, chunks):
    folder = os.path.join(root, "input", day)
    os.makedirs(folder)
    chunk.to_csv(os.path.join(folder, "interactions.csv"), index=False)
    data.items.to_csv(os.path.join(folder, "items.csv"), index=False)
    out[day] = folder
  return out


def run(tmp_path, capsys, *extra):
  config = tmp_path / "nightly.yaml"
  config.write_text(
      "pipeline_name: recsys-nightly\n"
      f"data: spans:{tmp_path}/input/{{YYYY}}-{{MM}}-{{DD}}\n"
      "data_spans:\n  window_spans: 2\n"
      "trainer:\n  models: [transitions]\n"
      "ranking:\n  enabled: false\n"
      # any model is blessed and pushed: the test is about which spans a run reads
      "validation:\n  min_hit_rate_lift_at_10: -1.0\n"
      "  max_regression: {hit_rate@10: 1.0, ndcg@10: 1.0}\n")
  code = cli.main(["run", "--config", str(config), "--pipeline-root",
                   str(tmp_path / "pipeline"), "--serving-dir", str(tmp_path / "serving"),
                   *extra])
  captured = capsys.readouterr()
  return code, captured.out + captured.err


def metadata_json(capsys, *argv):
  assert cli.main(["metadata", *argv, "--json"]) == 0
  return json.loads(capsys.readouterr().out)


def test_nightly_runs_read_the_newest_spans_and_stop_when_there_is_none(tmp_path, capsys,
                                                                        monkeypatch):
  # the run only: the recommendations `recsys run` shows afterwards are tested elsewhere
  monkeypatch.setattr(cli.serving_cli, "show_recommendations", lambda *_: 0)
  folders = write_daily_spans(str(tmp_path))
  newest = os.path.join(str(tmp_path), "input", DAYS[2])
  later = os.path.join(str(tmp_path), "later")  # day 3 arrives after run 2 (moved out
  os.rename(newest, later)                      # of input/: a name there is a span)
  first, second, third = (span_number(d) for d in DAYS)
  root = str(tmp_path / "pipeline")

  code, out = run(tmp_path, capsys)
  assert code == 0, out
  assert f"spans {first},{second}" in out and "Run summary" in out

  code, out = run(tmp_path, capsys)
  assert code == 0, out
  [line] = [l for l in out.splitlines() if l.startswith("No new span")]
  assert f"the newest, {second} ({folders[DAYS[1]]})" in line and "--force" in line
  assert "Run summary" not in out

  os.rename(later, newest)
  code, out = run(tmp_path, capsys)
  assert code == 0, out
  assert f"spans {second},{third}" in out and "Run summary" in out

  runs = metadata_json(capsys, "runs", "--pipeline-root", root)
  assert [r["spans"] for r in runs] == [f"{first},{second}", f"{second},{third}"]
  examples = [a for a in metadata_json(capsys, "artifacts", "--type", "Examples",
                                       "--pipeline-root", root)
              if a["producer"] == "TimeSplitExampleGen"]
  assert [(a["properties"]["span"], a["properties"]["spans"]) for a in examples] == [
      (second, f"{first},{second}"), (third, f"{second},{third}")]
  assert json.loads(examples[-1]["properties"]["span_paths"]) == {
      str(second): folders[DAYS[1]], str(third): folders[DAYS[2]]}

  models = metadata_json(capsys, "models", "--pipeline-root", root)
  latest = max(m["id"] for m in models if m["trainer"] == "RetrievalTrainer")
  assert cli.main(["metadata", "lineage", str(latest), "--pipeline-root", root]) == 0
  assert f"spans:           {second},{third}: {second} {folders[DAYS[1]]}" in \
      capsys.readouterr().out

  # the trainer's TensorBoard logs, where `recsys report` points
  from recsys_tfx.pipeline import report, summary
  store = summary.open_store(os.path.join(root, "metadata.sqlite"))
  [command] = report.tensorboard_commands(store, runs[-1]["run_id"])
  log_dir = command.split()[2]
  assert os.listdir(os.path.join(log_dir, "transitions", "validation"))
