"""What input is plausible (IngestConfig): timestamp years, ids stripped and bounded, exact
duplicates dropped and counted or refused, enough data to hold users out; and errors that
name the line and byte of a bad encoding and cut long values to a readable length."""
import calendar

import pytest

from recsys_tfx.components.ingest.csv_source import read_interactions_csv
from recsys_tfx.components.ingest.movielens import read_movielens
from recsys_tfx.schema import time_split
from recsys_tfx.schema.canonical import (DataError, IngestConfig, read_canonical,
                                         write_canonical)

HEADER = "user_id,item_id,timestamp"


def _csv(tmp_path, rows, name="i.csv", header=HEADER):
  path = tmp_path / name
  path.write_text("\n".join([header] + list(rows)) + "\n")
  return str(path)


def _error(path, **kwargs) -> str:
  with pytest.raises(DataError) as e:
    read_interactions_csv(path, **kwargs)
  return str(e.value)


# --- 5: timestamps -------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["99999999999999999999", "-1", "9223372036854775807",
                                   "-9223372036854775808", "4133980800"])
def test_implausible_timestamps_are_refused_naming_file_line_and_value(tmp_path, value):
  path = _csv(tmp_path, ["u1,i1,978300760", f"u1,i2,{value}"])
  message = _error(path)
  assert f"{path} line 3: field 'timestamp'" in message
  assert "from 1970-01-01 to 2100-12-31" in message and f"got {value}" in message.replace(
      "'", "")


def test_timestamp_in_milliseconds_gets_a_hint(tmp_path):
  message = _error(_csv(tmp_path, ["u1,i1,1672531200000"]))
  assert "line 2" in message and "looks like milliseconds" in message


def test_timestamp_range_is_configurable_and_inclusive(tmp_path):
  last_second = calendar.timegm((2100, 12, 31, 23, 59, 59))
  data = read_interactions_csv(_csv(tmp_path, ["u1,i1,0", f"u1,i2,{last_second}"]))
  assert data.interactions["timestamp"].tolist() == [0, last_second]
  old = _csv(tmp_path, ["u1,i1,-86400"], name="old.csv")
  assert "line 2" in _error(old)
  ingest = IngestConfig(min_year=1960, max_year=1980)
  assert read_interactions_csv(old, ingest=ingest).interactions["timestamp"].tolist() == [-86400]
  assert "from 1960-01-01 to 1980-12-31" in _error(
      _csv(tmp_path, ["u1,i1,978300760"], name="late.csv"), ingest=ingest)


def test_other_integers_that_do_not_fit_int64_are_refused_not_wrapped(tmp_path):
  path = _csv(tmp_path, ["u1,i1,978300760,99999999999999999999"],
              header=HEADER + ",hour")
  assert "line 2: field 'hour'" in _error(path)


def test_canonical_copy_keeps_the_limits_it_was_read_with(tmp_path):
  ingest = IngestConfig(min_year=1960)
  data = read_interactions_csv(_csv(tmp_path, ["u1,i1,-86400"]), ingest=ingest)
  out = write_canonical(data, str(tmp_path / "canonical"), ingest)["dir"]
  assert read_canonical(out).interactions["timestamp"].tolist() == [-86400]


# --- 6: duplicates, ids, too little data ---------------------------------------------------

def test_exact_duplicate_rows_are_dropped_and_counted(tmp_path):
  rows = [f"u{n % 3},i{n},{978300760 + n}" for n in range(10)]
  data = read_interactions_csv(_csv(tmp_path, rows + rows))  # every row twice
  assert data.duplicates_dropped == 10
  assert len(data.interactions) == 10
  assert data.interactions["item_id"].tolist() == [f"i{n}" for n in range(10)]


def test_exact_duplicates_refused_when_configured_naming_both_lines(tmp_path):
  path = _csv(tmp_path, ["u1,i1,978300760", "u1,i2,978300761", "u1,i1,978300760"])
  message = _error(path, ingest=IngestConfig(duplicates="refuse"))
  assert f"{path} line 4: an exact duplicate of line 2" in message
  assert "1 duplicate row(s) in all" in message and "ingest.duplicates" in message


def test_rows_that_differ_only_by_spaces_in_ids_are_one_user_and_item(tmp_path):
  path = _csv(tmp_path, ["u1,i1,978300760", " u1 ,i1 ,978300760", "u1, i2,978300761"])
  data = read_interactions_csv(path)
  assert data.interactions["user_id"].tolist() == ["u1", "u1"]
  assert data.interactions["item_id"].tolist() == ["i1", "i2"]
  assert data.duplicates_dropped == 1  # " u1 ,i1 " was "u1,i1" again
  assert data.items["item_id"].tolist() == ["i1", "i2"]


def test_ids_over_the_maximum_length_are_refused_with_a_short_message(tmp_path):
  huge = "x" * 10_000_000
  message = _error(_csv(tmp_path, ["u1,i1,978300760", f"u2,{huge},978300761"]))
  assert "line 3: field 'item_id': expected an id of at most 256 characters" in message
  assert "10,000,000 characters" in message and len(message) < 400
  assert "line 2" in _error(_csv(tmp_path, ["u1,i1,1"], name="s.csv"),
                            ingest=IngestConfig(max_id_length=1))


def test_items_file_ids_are_stripped_too(tmp_path):
  interactions = _csv(tmp_path, ["u1,i1,978300760"])
  items = _csv(tmp_path, ["i1,A", " i1 ,B"], name="items.csv", header="item_id,title")
  message = _error(interactions, items_path=items)
  assert "items.csv line 3: field 'item_id': expected unique ids, 'i1' appears twice" in message


@pytest.mark.parametrize("users, items, per_user, needed", [
    (1, 50, 40, "1 user(s), 1 of them with 3+ interactions"),  # a single user
    (30, 50, 2, "30 user(s), 0 of them with 3+"),  # nobody can be held out
    (30, 5, 5, "and 5 distinct item(s)"),  # too few items to rank
])
def test_too_little_data_is_refused_saying_how_much_is_needed(users, items, per_user, needed):
  user_ids = [f"u{u}" for u in range(users) for _ in range(per_user)]
  item_ids = [f"i{(u * 7 + k) % items}" for u in range(users) for k in range(per_user)]
  with pytest.raises(ValueError) as e:
    time_split.check_enough_data(user_ids, item_ids, 3, "csv:x.csv")
  message = str(e.value)
  assert message.startswith("csv:x.csv: too little data") and needed in message
  assert "at least 10 users with 3+ interactions each" in message
  assert "at least 11 distinct items" in message


def test_enough_data_passes():
  user_ids = [f"u{u}" for u in range(10) for _ in range(3)]
  item_ids = [f"i{(u + k) % 11}" for u in range(10) for k in range(3)] + []
  time_split.check_enough_data(user_ids + ["u0"] * 11, item_ids + [f"i{k}" for k in range(11)],
                               3, "x")


# --- 7: error messages ---------------------------------------------------------------------

def test_non_utf8_byte_is_reported_at_its_line_and_offset(tmp_path):
  lines = [HEADER.encode(), b"u,i,1", b"uu2,i\xff2,978300761"]  # the case
  path = tmp_path / "latin.csv"
  path.write_bytes(b"\n".join(lines) + b"\n")
  assert len(lines[0]) + 1 + len(lines[1]) + 1 + lines[2].index(b"\xff") == 37
  message = _error(str(path))
  assert f"{path} line 3: not valid utf-8 text" in message
  assert "byte 6 of the line (offset 37 in the file)" in message and "b'\\xff'" in message


def test_non_utf8_in_a_movielens_dat_file_is_reported_at_its_line(tmp_path):
  (tmp_path / "ratings.dat").write_bytes(b"1::2::5::978300760\n1::\xc3(::4::978300761\n")
  (tmp_path / "movies.dat").write_bytes(b"2::A (1999)::Drama\n")
  with pytest.raises(DataError) as e:
    read_movielens(str(tmp_path))
  assert "ratings.dat line 2: not valid utf-8 text" in str(e.value)
  assert "byte 4 of the line (offset 22 in the file)" in str(e.value)


def test_a_10_mb_header_line_is_cut_in_the_error(tmp_path):
  path = tmp_path / "wide.csv"
  path.write_text("x" * 10_000_000 + "\n1\n")
  message = _error(str(path))
  assert "missing required column 'user_id'" in message
  assert "10,000,000 characters" in message and len(message) < 400
