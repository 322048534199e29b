"""MovieLens readers: the three layouts from tiny files written here, the real small set,
and errors that name the file and line."""

import os

import numpy as np
import pytest

from recsys_tfx.schema.canonical import DataError
from recsys_tfx.components.ingest.movielens import read_movielens

ML_LATEST_SMALL = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                               "ml-latest-small")

# 978300760 = 2000-12-31 22:12:40 UTC
RATINGS = [("1", "10", "5", "978300760"), ("1", "20", "3", "978302109"),
           ("2", "10", "4", "978301968"), ("2", "30", "1", "978300275")]


def _write(path, lines, encoding="utf-8"):
  with open(path, "w", encoding=encoding, newline="") as f:
    f.write("".join(line + "\n" for line in lines))
  return str(path)


def write_100k(d):
  _write(d / "u.data", ["\t".join(r) for r in RATINGS])
  flags = lambda *on: "|".join("1" if i in on else "0" for i in range(19))  # noqa: E731
  _write(d / "u.item", [
      f"10|American President, The (1995)|01-Jan-1995||http://x|{flags(5, 8, 14)}",
      f"20|Misérables, Les (1995)|01-Jan-1995||http://x|{flags(8, 12)}",
      f"30|Untitled|01-Jan-1998||http://x|{flags()}",
      f"40|Never Rated (1990)|01-Jan-1990||http://x|{flags(1)}"], encoding="latin-1")
  _write(d / "u.user", ["1|24|M|technician|85711", "2|53|F|other|94043"])
  return d


def write_1m(d):
  _write(d / "ratings.dat", ["::".join(r) for r in RATINGS])
  _write(d / "movies.dat", ["10::American President, The (1995)::Comedy|Drama|Romance",
                            "20::Misérables, Les (1995)::Drama|Musical",
                            "30::Untitled::(no genres listed)"], encoding="latin-1")
  _write(d / "users.dat", ["1::F::1::10::48067", "2::M::56::16::70072"])
  return d


def write_latest(d):
  _write(d / "ratings.csv", ["userId,movieId,rating,timestamp"] + [",".join(r) for r in RATINGS])
  _write(d / "movies.csv", ["movieId,title,genres",
                            '10,"American President, The (1995)",Comedy|Drama|Romance',
                            '20,"Misérables, Les (1995)",Drama|Musical',
                            "30,Untitled,(no genres listed)"])
  return d


def _check_interactions(data):
  it = data.interactions
  assert list(it.columns) == ["user_id", "item_id", "timestamp", "hour", "label", "rating"]
  assert it.dtypes.astype(str).tolist() == ["object", "object", "int64", "int64", "float32",
                                            "float32"]
  assert it["user_id"].tolist() == ["1", "1", "2", "2"]
  assert it["rating"].tolist() == [5.0, 3.0, 4.0, 1.0]
  assert (it["label"] == 1.0).all()
  assert it["hour"].tolist() == [22, 22, 22, 22]  # UTC hour of 978300760 etc.


def _check_items(data):
  items = data.items.set_index("item_id")
  assert items.loc["10", "title"] == "American President, The (1995)"
  assert items.loc["20", "title"] == "Misérables, Les (1995)"
  assert items.loc["10", "year"] == 1995
  assert items.loc["30", "genres"] == "unknown"
  assert items["year"].dtype == np.int64


def test_100k(tmp_path):
  data = read_movielens(str(write_100k(tmp_path)))
  assert (data.name, data.schema_name) == ("movielens-100k", "movielens_users")
  _check_interactions(data)
  _check_items(data)
  items = data.items.set_index("item_id")
  assert items.loc["10", "genres"] == "Comedy|Drama|Romance"
  assert items.loc["30", "year"] == 1998  # no year in the title: the release date's
  assert "40" in items.index  # catalogue item nobody rated
  users = data.users.set_index("user_id")
  assert users.loc["1"].tolist() == [24, "M", "technician"]
  assert users["age"].dtype == np.int64


def test_1m(tmp_path):
  data = read_movielens(str(write_1m(tmp_path)))
  assert (data.name, data.schema_name) == ("movielens-1m", "movielens_users")
  _check_interactions(data)
  _check_items(data)
  assert data.items.set_index("item_id").loc["30", "year"] == 0  # 0 = unknown
  users = data.users.set_index("user_id")
  assert users.loc["1"].tolist() == [1, "F", "K-12 student"]
  assert users.loc["2"].tolist() == [56, "M", "self-employed"]


def test_latest(tmp_path):
  data = read_movielens(str(write_latest(tmp_path)))
  assert (data.name, data.schema_name, data.users) == ("movielens-latest", "movielens", None)
  _check_interactions(data)
  _check_items(data)


def test_latest_small_is_named_by_directory(tmp_path):
  d = tmp_path / "ml-latest-small"
  d.mkdir()
  assert read_movielens(str(write_latest(d))).name == "movielens-latest-small"


@pytest.mark.skipif(not os.path.isdir(ML_LATEST_SMALL), reason="ml-latest-small is not here")
def test_real_ml_latest_small():
  data = read_movielens(ML_LATEST_SMALL)
  it = data.interactions
  assert (len(it), it["user_id"].nunique(), len(data.items)) == (100_836, 610, 9_742)
  assert data.name == "movielens-latest-small"
  assert it["item_id"].isin(data.items["item_id"]).all()
  assert not (data.items["genres"] == "(no genres listed)").any()
  assert (data.items["year"] > 1900).mean() > 0.99
  assert set(it["rating"].unique()) <= {r / 2 for r in range(1, 11)}


# --- bad input: each error names the file and the line or field ---------------------------


def _error(path):
  with pytest.raises(DataError) as e:
    read_movielens(str(path))
  return str(e.value)


def test_dat_with_commas(tmp_path):
  write_1m(tmp_path)
  _write(tmp_path / "ratings.dat", [",".join(r) for r in RATINGS])
  msg = _error(tmp_path)
  assert "ratings.dat line 1" in msg and "'::'" in msg
  assert "UserID::MovieID::Rating::Timestamp" in msg
  assert msg.endswith("got 1")


def test_wrong_field_count(tmp_path):
  write_100k(tmp_path)
  _write(tmp_path / "u.data", ["1\t10\t5\t978300760", "1\t20\t3"])
  msg = _error(tmp_path)
  assert "u.data line 2" in msg and "expected 4 fields" in msg and "got 3" in msg


def test_non_numeric_timestamp(tmp_path):
  write_100k(tmp_path)
  _write(tmp_path / "u.data", ["\t".join(r) for r in RATINGS[:2]] + ["2\t10\t4\tyesterday"])
  msg = _error(tmp_path)
  assert "u.data line 3" in msg and "'timestamp'" in msg and "'yesterday'" in msg


def test_non_numeric_rating(tmp_path):
  write_latest(tmp_path)
  _write(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp", "1,10,five,978300760"])
  msg = _error(tmp_path)
  assert "ratings.csv line 2" in msg and "'rating'" in msg and "'five'" in msg


def test_csv_with_wrong_separator(tmp_path):
  write_latest(tmp_path)
  _write(tmp_path / "ratings.csv", ["userId\tmovieId\trating\ttimestamp", "1\t10\t5\t978300760"])
  msg = _error(tmp_path)
  assert "ratings.csv line 1" in msg and "userId,movieId,rating,timestamp" in msg


def test_rated_movie_missing_from_movies(tmp_path):
  write_1m(tmp_path)
  _write(tmp_path / "ratings.dat", ["::".join(r) for r in RATINGS] + ["2::99::3::978300275"])
  msg = _error(tmp_path)
  assert "ratings.dat line 5" in msg and "'99'" in msg
  assert "is not in" in msg and "movies.dat" in msg


@pytest.mark.parametrize("write, ratings", [(write_latest, "ratings.csv"),
                                            (write_1m, "ratings.dat"),
                                            (write_100k, "u.data")])
def test_empty_ratings_file(tmp_path, write, ratings):
  write(tmp_path)
  _write(tmp_path / ratings, [])
  msg = _error(tmp_path)
  assert f"{ratings}: file is empty" in msg


def test_header_only_ratings_csv(tmp_path):
  write_latest(tmp_path)
  _write(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp"])
  assert "ratings.csv: no data rows" in _error(tmp_path)


def test_missing_movies_file(tmp_path):
  write_1m(tmp_path)
  os.remove(tmp_path / "movies.dat")
  assert "movies.dat: no such file" in _error(tmp_path)


def test_nonexistent_path(tmp_path):
  msg = _error(tmp_path / "nowhere")
  assert "nowhere" in msg and "no such directory" in msg


def test_directory_without_movielens_files(tmp_path):
  _write(tmp_path / "notes.txt", ["hello"])
  msg = _error(tmp_path)
  assert str(tmp_path) in msg and "u.data" in msg and "ratings.dat" in msg and "ratings.csv" in msg
