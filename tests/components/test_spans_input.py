"""TimeSplitExampleGen with a span pattern and no resolved spans (a compiled Kubeflow
spec): it resolves the newest spans when it runs, writes their canonical copy to its
input_base, and records them on the Examples artifact."""
import os

import pytest
from tfx.types import standard_artifacts

from recsys_tfx.components.ingest.spans import SpanError
from recsys_tfx.components.time_split_example_gen import spans_input
from recsys_tfx.components.time_split_example_gen.executor import record_spans
from recsys_tfx.components.time_split_example_gen.options import Options
from recsys_tfx.schema import canonical
from recsys_tfx.schema.features import SCHEMA_DIR

SCHEMA = os.path.join(SCHEMA_DIR, "interactions", "schema.pbtxt")


def write_span(folder, rows):
  os.makedirs(folder)
  with open(os.path.join(folder, "interactions.csv"), "w") as f:
    f.write("user_id,item_id,timestamp\n" + "".join(r + "\n" for r in rows))


def test_the_newest_window_is_resolved_and_written_to_input_base(tmp_path):
  write_span(str(tmp_path / "in" / "4"), ["u1,i1,1700000000"])
  write_span(str(tmp_path / "in" / "5"), ["u1,i2,1700086400", "u2,i1,1700086500"])
  write_span(str(tmp_path / "in" / "6"), ["u2,i3,1700172800"])
  options = Options(SCHEMA, span_pattern=str(tmp_path / "in" / "{SPAN}"), window_spans=2)
  input_base = str(tmp_path / "data")
  resolved = spans_input.materialize(options, input_base)
  assert resolved.numbers == "5,6"
  data = canonical.read_canonical(input_base)
  assert sorted(data.interactions["item_id"]) == ["i1", "i2", "i3"]

  write_span(str(tmp_path / "in" / "7"), ["u3,i1,1700259200"])  # the next night
  assert spans_input.materialize(options, input_base).numbers == "6,7"
  assert sorted(canonical.read_canonical(input_base).interactions["user_id"]) == ["u2", "u3"]


def test_an_empty_span_stops_the_component_naming_it(tmp_path):
  write_span(str(tmp_path / "in" / "4"), [])
  with pytest.raises(SpanError, match="4: span 4 is empty"):
    spans_input.materialize(Options(SCHEMA, span_pattern=str(tmp_path / "in" / "{SPAN}")),
                            str(tmp_path / "data"))


def test_the_spans_are_recorded_on_the_examples():
  examples = standard_artifacts.Examples()
  record_spans(examples, Options(SCHEMA, span_pattern="/in/{SPAN}", window_spans=2,
                                 spans=((5, "/in/5"), (6, "/in/6"))))
  assert examples.span == 6
  assert examples.get_string_custom_property("spans") == "5,6"
  assert examples.get_string_custom_property("span_paths") == '{"5": "/in/5", "6": "/in/6"}'
  plain = standard_artifacts.Examples()
  record_spans(plain, Options(SCHEMA))
  assert not plain.has_custom_property("spans")
