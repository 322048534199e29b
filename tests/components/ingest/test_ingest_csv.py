"""A user's own CSV, the `load_source` specs, and the canonical files (atomic writes,
round trips that keep ids as strings)."""

import os

import numpy as np
import pandas as pd
import pytest

from recsys_tfx.components.ingest import synthetic
from recsys_tfx.schema import canonical as dataset
from recsys_tfx.components.ingest.csv_source import read_interactions_csv
from recsys_tfx.schema.canonical import DataError, read_canonical, write_canonical
from recsys_tfx.components.ingest.sources import load_source


def _write(path, lines):
  path.write_text("".join(line + "\n" for line in lines))
  return str(path)


@pytest.fixture
def interactions_csv(tmp_path):
  return _write(tmp_path / "clicks.csv", [
      "user_id,item_id,timestamp,page,price",
      "007,42,978300760,home,1.5",
      "007,043,978303600,search,2.0",
      "NA,42,978307200,home,0.5"])


def _error(*args, **kwargs):
  with pytest.raises(DataError) as e:
    read_interactions_csv(*args, **kwargs)
  return str(e.value)


def test_minimal_csv(interactions_csv):
  data = read_interactions_csv(interactions_csv)
  assert (data.name, data.schema_name, data.users) == ("csv", "interactions", None)
  it = data.interactions
  assert list(it.columns) == ["user_id", "item_id", "timestamp", "hour", "label", "page", "price"]
  assert it["user_id"].tolist() == ["007", "007", "NA"]  # ids stay strings, "NA" is not missing
  assert it["item_id"].tolist() == ["42", "043", "42"]
  assert it["hour"].tolist() == [22, 23, 0]  # UTC hour of the timestamp
  assert it["label"].dtype == np.float32 and (it["label"] == 1).all()
  assert it["price"].tolist() == [1.5, 2.0, 0.5]  # context columns are kept
  # Items derived from the ids: no content features.
  assert data.items.to_dict("list") == {"item_id": ["42", "043"], "genres": ["unknown", "unknown"],
                                        "title": ["", ""], "year": [0, 0]}


def test_csv_with_hour_label_rating_items_and_users(tmp_path):
  path = _write(tmp_path / "i.csv", ["user_id,item_id,timestamp,hour,label,rating",
                                     "1,a,978300760,9,0,2.5", "2,b,978300761,10,1,4"])
  items = _write(tmp_path / "items.csv", ["item_id,title,genres,year,brand",
                                          'a,"Hello, World",Drama|Comedy,1999,acme', "b,B,,,zeta",
                                          "c,Never clicked,News,2020,acme"])
  users = _write(tmp_path / "users.csv", ["user_id,age,gender", "1,30,F", "2,41,M"])
  data = read_interactions_csv(path, items, users)
  it = data.interactions
  assert it["hour"].tolist() == [9, 10] and it["label"].tolist() == [0.0, 1.0]
  assert it["rating"].dtype == np.float32
  items = data.items.set_index("item_id")
  assert items.loc["a"].tolist() == ["Drama|Comedy", "Hello, World", 1999, "acme"]
  assert items.loc["b"].tolist() == ["unknown", "B", 0, "zeta"]
  assert data.users["age"].dtype == np.int64


def test_missing_file(tmp_path):
  assert "nope.csv: no such file" in _error(str(tmp_path / "nope.csv"))


def test_empty_file(tmp_path):
  path = tmp_path / "empty.csv"
  path.write_text("")
  assert "empty.csv: file is empty" in _error(str(path))
  assert "no data rows" in _error(_write(tmp_path / "header.csv", ["user_id,item_id,timestamp"]))


def test_missing_column(tmp_path):
  msg = _error(_write(tmp_path / "x.csv", ["user,item_id,timestamp", "1,2,3"]))
  assert "x.csv" in msg and "missing required column 'user_id'" in msg
  assert "found: user, item_id, timestamp" in msg


def test_non_numeric_timestamp(tmp_path):
  msg = _error(_write(tmp_path / "x.csv", ["user_id,item_id,timestamp", "1,2,3", "1,3,2021-05-01"]))
  assert "x.csv line 3" in msg and "'timestamp'" in msg and "'2021-05-01'" in msg


@pytest.mark.parametrize("row, field", [(",5,100", "user_id"), ("4,,100", "item_id")])
def test_empty_id(tmp_path, row, field):
  msg = _error(_write(tmp_path / "x.csv", ["user_id,item_id,timestamp", "1,2,3", row]))
  assert "x.csv line 3" in msg and f"'{field}'" in msg


def test_too_many_fields(tmp_path):
  msg = _error(_write(tmp_path / "x.csv", ["user_id,item_id,timestamp", "1,2,3", "1,2,3,4"]))
  assert "x.csv line 3: expected 3 comma-separated fields" in msg and msg.endswith("got 4")


def test_item_missing_from_items_file(tmp_path):
  path = _write(tmp_path / "x.csv", ["user_id,item_id,timestamp", "1,a,3", "1,b,4"])
  items = _write(tmp_path / "items.csv", ["item_id,genres", "a,News"])
  msg = _error(path, items)
  assert "x.csv line 3" in msg and "'b'" in msg and "items.csv" in msg


def test_bad_hour(tmp_path):
  msg = _error(_write(tmp_path / "x.csv", ["user_id,item_id,timestamp,hour", "1,a,3,24"]))
  assert "x.csv line 2" in msg and "'hour'" in msg


# --- load_source -------------------------------------------------------------------------


def test_load_source_specs(tmp_path, interactions_csv):
  assert len(load_source("synthetic:6000").interactions) == 6000
  assert len(load_source("synthetic", synthetic_interactions=5000, seed=1).interactions) == 5000
  assert load_source("csv:" + interactions_csv).interactions["user_id"].iloc[0] == "007"
  _write(tmp_path / "u.data", ["1\t10\t5\t978300760"])
  _write(tmp_path / "u.item", ["10|A (1995)|||x|" + "|".join(["0"] * 18 + ["1"])])
  assert load_source(f"movielens:{tmp_path}").name == "movielens-100k"


def test_load_source_csv_directory(tmp_path):
  data = synthetic.generate(**synthetic.TINY)
  paths = write_canonical(data, str(tmp_path / "canon"))
  loaded = load_source(f"csv:{paths['dir']}")
  assert loaded.users is not None and len(loaded.interactions) == len(data.interactions)
  assert loaded.items["genres"].equals(data.items["genres"])


@pytest.mark.parametrize("spec",
                         ["parquet:/x", "movielens:", "synthetic:lots", "/data/ratings.csv"])
def test_load_source_rejects_bad_specs(spec):
  with pytest.raises(DataError) as e:
    load_source(spec)
  assert spec in str(e.value)
  if not spec.startswith("synthetic"):
    allowed = "synthetic, synthetic:<n_interactions>, movielens:<dir>, csv:<file or dir>"
    assert allowed in str(e.value)


# --- canonical files ---------------------------------------------------------------------


def test_round_trip_keeps_ids_and_dtypes(tmp_path, interactions_csv):
  data = read_interactions_csv(interactions_csv)
  back = read_canonical(write_canonical(data, str(tmp_path / "out"))["dir"])
  assert back.interactions["user_id"].tolist() == ["007", "007", "NA"]
  assert back.items["item_id"].tolist() == ["42", "043"]
  pd.testing.assert_frame_equal(back.interactions, data.interactions)
  pd.testing.assert_frame_equal(back.items, data.items)
  assert (back.name, back.schema_name, back.users) == ("csv", "interactions", None)


def test_round_trip_synthetic(tmp_path):
  data = synthetic.generate(**synthetic.TINY)
  paths = write_canonical(data, str(tmp_path / "syn"))
  assert sorted(os.listdir(paths["dir"])) == ["interactions.csv", "items.csv", "meta.json",
                                              "users.csv"]
  back = read_canonical(paths["dir"])
  for table in ("interactions", "items", "users"):
    pd.testing.assert_frame_equal(getattr(back, table), getattr(data, table))


def test_csv_quoting(tmp_path):
  data = read_interactions_csv(
      _write(tmp_path / "x.csv", ["user_id,item_id,timestamp", "1,a,3"]),
      _write(tmp_path / "items.csv", ["item_id,title", 'a,"Say ""hi"", then, bye"']))
  paths = write_canonical(data, str(tmp_path / "out"))
  assert '"Say ""hi"", then, bye"' in open(paths["items"]).read()
  assert read_canonical(paths["dir"]).items["title"].iloc[0] == 'Say "hi", then, bye'


def test_same_content_is_reused_other_content_replaces(tmp_path):
  out = str(tmp_path / "out")
  data = synthetic.generate(**synthetic.TINY)
  first = write_canonical(data, out)
  mtime = os.stat(first["interactions"]).st_mtime_ns
  assert write_canonical(data, out) == first
  assert os.stat(first["interactions"]).st_mtime_ns == mtime  # untouched
  other = synthetic.generate(**synthetic.TINY, seed=1)
  write_canonical(other, out)
  pd.testing.assert_frame_equal(read_canonical(out).interactions, other.interactions)
  assert os.listdir(tmp_path) == ["out"]  # no temporary directories left behind


def _fail_on_second_write(monkeypatch):
  real, calls = dataset._write_csv, []

  def flaky(df, path):
    calls.append(path)
    if len(calls) == 2:
      raise OSError("disk full")
    real(df, path)
  monkeypatch.setattr(dataset, "_write_csv", flaky)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
  _fail_on_second_write(monkeypatch)
  with pytest.raises(OSError, match="disk full"):
    write_canonical(synthetic.generate(**synthetic.TINY), str(tmp_path / "out"))
  assert not os.path.exists(tmp_path / "out")
  assert os.listdir(tmp_path) == []


def test_failed_write_keeps_the_previous_version(tmp_path, monkeypatch):
  old = synthetic.generate(**synthetic.TINY)
  write_canonical(old, str(tmp_path / "out"))
  _fail_on_second_write(monkeypatch)
  with pytest.raises(OSError):
    write_canonical(synthetic.generate(**synthetic.TINY, seed=1), str(tmp_path / "out"))
  kept = read_canonical(str(tmp_path / "out"))
  pd.testing.assert_frame_equal(kept.interactions, old.interactions)
  assert os.listdir(tmp_path) == ["out"]


def test_invalid_data_is_not_written(tmp_path):
  data = synthetic.generate(**synthetic.TINY)
  data.items = data.items[data.items["item_id"] != data.interactions["item_id"].iloc[0]]
  with pytest.raises(DataError, match="is not in"):
    write_canonical(data, str(tmp_path / "out"))
  assert os.listdir(tmp_path) == []
