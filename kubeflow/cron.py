"""Cron expressions for Kubeflow Pipelines recurring runs.

KFP's scheduler parses `trigger.cron_schedule.cron` with github.com/robfig/cron (v1)
`cron.Parse` (backend/src/crd/controller/scheduledworkflow/util/cron_schedule.go), whose
first field is SECONDS and whose day-of-week is optional. So the familiar 5-field
"0 3 * * *" would run at minute 3 of every hour there. We accept the standard 5-field
form (minute hour day-of-month month day-of-week) and turn it into KFP's 6-field form by
prepending a seconds field of 0; 6-field expressions and robfig descriptors (@daily,
@every 1h, ...) pass through unchanged after validation.
"""
import re
from typing import List, Tuple

MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

# (name, low, high, names starting at `low`, whether "?" is allowed)
FIELDS = [("second", 0, 59, None, False), ("minute", 0, 59, None, False),
          ("hour", 0, 23, None, False), ("day-of-month", 1, 31, None, True),
          ("month", 1, 12, MONTHS, False), ("day-of-week", 0, 6, DAYS, True)]
DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$")


class CronError(ValueError):
  pass


def _value(text: str, field: Tuple) -> int:
  name, low, high, names, _ = field
  if names and text.upper() in names:
    return low + names.index(text.upper())
  if not text.isdigit():
    raise CronError(f"{name} '{text}' is not a number" + (
        f" or one of {','.join(names)}" if names else ""))
  value = int(text)
  if not low <= value <= high:
    raise CronError(f"{name} {value} is out of range {low}-{high}")
  return value


def _check_field(text: str, field: Tuple) -> None:
  name, low, high, _, question_ok = field
  for item in text.split(","):
    span, slash, step = item.partition("/")
    if slash and not (step.isdigit() and int(step) >= 1):
      raise CronError(f"{name} step '{step}' must be a positive integer")
    if span == "?" and question_ok or span == "*":
      continue
    start, dash, end = span.partition("-")
    first = _value(start, field)
    if dash and _value(end, field) < first:
      raise CronError(f"{name} range '{span}' runs backwards")


def to_kfp(expression: str) -> str:
  """The 6-field (seconds first) form KFP runs, or CronError naming what is wrong."""
  text = " ".join(expression.split())
  try:
    if text.startswith("@"):
      return _check_descriptor(text)
    parts: List[str] = text.split(" ")
    if len(parts) == 5:
      parts = ["0"] + parts
    if len(parts) != 6:
      raise CronError(f"expected 5 fields (minute hour day-of-month month day-of-week) "
                      f"or 6 (seconds first), got {len(parts)}")
    for part, field in zip(parts, FIELDS):
      _check_field(part, field)
    return " ".join(parts)
  except CronError as e:
    raise CronError(f"invalid cron expression '{expression}': {e}") from None


def _check_descriptor(text: str) -> str:
  if text in DESCRIPTORS:
    return text
  word, _, duration = text.partition(" ")
  if word == "@every" and GO_DURATION.match(duration):
    return text
  raise CronError(f"unknown descriptor; use one of {sorted(DESCRIPTORS)} or '@every 1h30m'")
