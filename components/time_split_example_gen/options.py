"""TimeSplitExampleGen's settings, named once: the component validates them and stores
them in the ExampleGen's custom_config; the executor reads them back from there."""
import dataclasses
import json
from typing import Any, Dict, Tuple

from recsys_tfx.schema.time_split import MIN_INTERACTIONS_TO_HOLD_OUT


@dataclasses.dataclass(frozen=True)
class Options:
  schema_file: str  # the curated schema the examples are typed by
  seed: int = 0  # of the tie-break between equal timestamps
  min_interactions_to_hold_out: int = MIN_INTERACTIONS_TO_HOLD_OUT
  history_length: int = 0  # > 0: each example carries the ids of that many earlier items
  # A fingerprint of the code that makes the examples and everything downstream; unused by
  # the executor, it is part of TFX's cache key, so outputs of other code are not reused.
  code_version: str = ""
  # Dated spans (components/ingest/spans.py): the pattern and window the input came from,
  # and the spans it holds, [[number, path], ...] oldest first. Recorded on the Examples
  # artifact (span = the newest, spans = "3,4,5"); empty when the input is not spans.
  span_pattern: str = ""
  window_spans: int = 1
  skip_bad_spans: bool = False
  # Empty with a pattern (a compiled Kubeflow spec): resolved when the component runs.
  spans: Tuple[Tuple[int, str], ...] = ()

  def __post_init__(self):
    if not self.schema_file:
      raise ValueError("TimeSplitExampleGen: schema_file is required")
    for name in ("seed", "min_interactions_to_hold_out", "history_length", "window_spans"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"TimeSplitExampleGen: {name} must be an integer, got {value!r}")
    if self.min_interactions_to_hold_out < MIN_INTERACTIONS_TO_HOLD_OUT:
      raise ValueError(f"TimeSplitExampleGen: min_interactions_to_hold_out must be >= "
                       f"{MIN_INTERACTIONS_TO_HOLD_OUT} (train, eval, test), got "
                       f"{self.min_interactions_to_hold_out}")
    if self.window_spans < 1:
      raise ValueError(f"TimeSplitExampleGen: window_spans must be >= 1, got "
                       f"{self.window_spans}")
    if self.spans and not self.span_pattern:
      raise ValueError("TimeSplitExampleGen: spans need the span_pattern they came from")
    if self.history_length < 0:
      raise ValueError(f"TimeSplitExampleGen: history_length must be >= 0, got "
                       f"{self.history_length}")


def from_exec_properties(exec_properties: Dict[str, Any]) -> Options:
  return Options(**json.loads(exec_properties.get("custom_config") or "{}"))
