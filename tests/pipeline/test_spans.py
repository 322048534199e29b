"""Dated spans (components/ingest/spans.py): which spans a run reads, and the errors that
name the path; reading a window of them as one dataset; the config section."""
import datetime
import os

import pytest

from recsys_tfx.components.ingest import sources
from recsys_tfx.components.ingest import spans
from recsys_tfx.components.ingest.spans import SpanConfig, SpanError
from recsys_tfx.pipeline import configs

HEADER = "user_id,item_id,timestamp\n"


def day_span(year, month, day) -> int:
  return (datetime.date(year, month, day) - datetime.date(1970, 1, 1)).days


def write_span(path, rows=("u1,i1,1700000000", "u2,i2,1700000100"), header=HEADER):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w") as f:
    f.write(header + "".join(r + "\n" for r in rows))
  return path


def dated(tmp_path, *days, suffix=".csv"):
  for day in days:
    write_span(str(tmp_path / f"{day}{suffix}"))
  return str(tmp_path / "{YYYY}-{MM}-{DD}") + suffix


def test_a_date_is_days_since_1970_as_tfx_counts():
  pattern = "/in/{YYYY}-{MM}-{DD}.csv"
  assert spans.span_number(pattern, "/in/1970-01-01.csv") == 0
  assert spans.span_number(pattern, "/in/2026-12-02.csv") == day_span(2026, 12, 2)
  assert spans.span_path(pattern, day_span(2026, 12, 2)) == "/in/2026-12-02.csv"
  assert spans.span_number("/in/{SPAN}/data.csv", "/in/42/data.csv") == 42
  assert spans.span_number(pattern, "/in/2026-13-02.csv") is None  # no month 13
  assert spans.span_number(pattern, "/in/2026-2-02.csv") is None  # {MM} is two digits


@pytest.mark.parametrize("pattern", ["/in/data.csv", "/in/{SPAN}/{SPAN}.csv",
                                     "/in/{YYYY}-{MM}.csv", "/in/{SPAN}-{YYYY}-{MM}-{DD}"])
def test_a_pattern_needs_span_or_a_whole_date_once(pattern):
  with pytest.raises(SpanError, match="expected {SPAN} once"):
    spans.check_pattern(pattern)


def test_the_newest_span_by_default(tmp_path):
  pattern = dated(tmp_path, "2026-11-29", "2026-11-30", "2026-12-01")
  resolved = spans.resolve(pattern, SpanConfig())
  assert [s.number for s in resolved.spans] == [day_span(2026, 12, 1)]
  assert resolved.newest.path == str(tmp_path / "2026-12-01.csv")


def test_a_rolling_window_of_the_newest_spans_oldest_first(tmp_path):
  pattern = dated(tmp_path, "2026-11-28", "2026-11-29", "2026-11-30", "2026-12-01")
  resolved = spans.resolve(pattern, SpanConfig(window_spans=3))
  first = day_span(2026, 11, 29)
  assert resolved.numbers == f"{first},{first + 1},{first + 2}"
  # fewer spans than the window (the first nights): all there are, not a gap
  assert len(spans.resolve(pattern, SpanConfig(window_spans=10)).spans) == 4


def test_span_numbers_and_directories(tmp_path):
  for number in (7, 8, 9):
    write_span(str(tmp_path / str(number) / "interactions.csv"))
  resolved = spans.resolve(str(tmp_path / "{SPAN}"), SpanConfig(window_spans=2))
  assert resolved.numbers == "8,9" and resolved.newest.path == str(tmp_path / "9")


def test_a_gap_inside_the_window_names_the_missing_span(tmp_path):
  pattern = dated(tmp_path, "2026-11-29", "2026-12-01")
  missing = str(tmp_path / "2026-11-30.csv")
  with pytest.raises(SpanError, match=f"span {day_span(2026, 11, 30)} \\({missing}\\) is "
                                      f"missing inside the window"):
    spans.resolve(pattern, SpanConfig(window_spans=2))
  assert len(spans.resolve(pattern, SpanConfig(window_spans=1)).spans) == 1  # outside it
  skipped = spans.resolve(pattern, SpanConfig(window_spans=2, skip_bad_spans=True))
  assert len(skipped.spans) == 2 and "missing" in skipped.skipped[0]


def test_a_malformed_name_that_fits_the_layout_is_named(tmp_path):
  pattern = dated(tmp_path, "2026-11-30", "2026-12-01")
  bad = write_span(str(tmp_path / "2026-12-xx.csv"))
  with pytest.raises(SpanError, match=f"{bad}: fits the layout .* but not the pattern"):
    spans.resolve(pattern, SpanConfig())
  resolved = spans.resolve(pattern, SpanConfig(skip_bad_spans=True))
  assert resolved.newest.number == day_span(2026, 12, 1)
  assert resolved.skipped[0].startswith(bad)
  write_span(str(tmp_path / "notes.txt"))  # does not fit the layout: not a span at all
  spans.resolve(pattern, SpanConfig(skip_bad_spans=True))


def test_an_empty_span_is_named(tmp_path):
  pattern = dated(tmp_path, "2026-11-30", "2026-12-01")
  empty = write_span(str(tmp_path / "2026-12-02.csv"), rows=())
  with pytest.raises(SpanError, match=f"{empty}: span {day_span(2026, 12, 2)} is empty"):
    spans.resolve(pattern, SpanConfig())
  # skipped: the newest good span is read instead
  resolved = spans.resolve(pattern, SpanConfig(skip_bad_spans=True))
  assert resolved.newest.number == day_span(2026, 12, 1)
  os.remove(empty)
  os.makedirs(tmp_path / "2026-12-03.csv")  # an empty directory is empty too
  with pytest.raises(SpanError, match="2026-12-03.csv: span .* is empty"):
    spans.resolve(pattern, SpanConfig())


def test_two_paths_of_one_span_number_are_refused(tmp_path):
  for name in ("3", "03"):
    write_span(str(tmp_path / f"{name}.csv"))
  with pytest.raises(SpanError, match="span 3 again"):
    spans.resolve(str(tmp_path / "{SPAN}.csv"), SpanConfig())


def test_no_span_at_all_names_what_was_looked_for(tmp_path):
  with pytest.raises(SpanError, match="no span found"):
    spans.resolve(str(tmp_path / "{SPAN}.csv"), SpanConfig())


def test_a_window_reads_as_one_dataset_the_newest_rows_winning(tmp_path):
  write_span(str(tmp_path / "1" / "interactions.csv"), ("u1,i1,1700000000",
                                                         "u2,i2,1700000100"))
  write_span(str(tmp_path / "1" / "items.csv"), ("i1,Drama", "i2,Comedy"),
             header="item_id,genres\n")
  write_span(str(tmp_path / "2" / "interactions.csv"), ("u1,i3,1700090000",
                                                         "u2,i2,1700000100"))  # repeated
  write_span(str(tmp_path / "2" / "items.csv"), ("i1,Horror", "i2,Comedy", "i3,Drama"),
             header="item_id,genres\n")
  resolved = spans.resolve(str(tmp_path / "{SPAN}"), SpanConfig(window_spans=2))
  data = sources.load_spans(resolved.spans, pattern=resolved.pattern)
  assert sorted(data.interactions["item_id"]) == ["i1", "i2", "i3"]
  assert data.duplicates_dropped == 1
  genres = dict(zip(data.items["item_id"], data.items["genres"]))
  assert genres["i1"] == "Horror"  # the newer span's


def test_the_config_section_and_its_errors(tmp_path):
  config = configs.load(None, {"data": "spans:/in/{YYYY}-{MM}-{DD}",
                               "data_spans.window_spans": 3})
  assert config.data_spans == SpanConfig(window_spans=3)
  with pytest.raises(configs.ConfigError, match="data_spans.window_spans must be an "
                                                "integer >= 1, got 0"):
    configs.load(None, {"data_spans.window_spans": 0})
  with pytest.raises(configs.ConfigError, match="unknown key"):
    configs.load(None, {"data_spans.window": 3})
  with pytest.raises(configs.ConfigError, match="data: span pattern '/in/x.csv'"):
    configs.load(None, {"data": "spans:/in/x.csv"})
