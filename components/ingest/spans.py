"""Dated spans of interactions, as TFX names them: which ones a run ingests.

A span pattern is a path with `{SPAN}` (an integer, the span number) or `{YYYY}`, `{MM}`
and `{DD}` (a date; its span number is the days since 1970-01-01, as TFX's ExampleGen
counts), each once, e.g. /data/input/{YYYY}-{MM}-{DD} or /data/{SPAN}/interactions.csv.
Each path it matches is one span: an interactions CSV in the canonical format, a
directory with interactions.csv [+ items.csv, users.csv], or a MovieLens dump
(components/ingest/sources.py reads them).

A run ingests the newest span, or the newest `window_spans` spans (a rolling window).
Refused, naming the path: a name that fits the layout (the pattern with each spec as a
wildcard) but not the pattern (a bad date, letters for a span), two paths of one span
number, an empty span, and a span missing inside the window (a gap). With
`skip_bad_spans` such spans are skipped instead, and the window is the newest good ones.
"""

from __future__ import annotations

import dataclasses
import datetime
import glob as glob_lib
import os
import re
from typing import Callable, List, Optional, Tuple

from recsys_tfx.schema.canonical import DataError

SCHEME = "spans"  # data: spans:<pattern>
SPAN_SPEC = "{SPAN}"
DATE_SPECS = ("{YYYY}", "{MM}", "{DD}")
EPOCH = datetime.date(1970, 1, 1)
_SPEC_REGEX = {SPAN_SPEC: r"(?P<span>\d+)", "{YYYY}": r"(?P<year>\d{4})",
               "{MM}": r"(?P<month>\d{2})", "{DD}": r"(?P<day>\d{2})"}


class SpanError(DataError):
  pass


@dataclasses.dataclass
class SpanConfig:
  """The `data_spans` section of a pipeline config (used when data is spans:<pattern>)."""
  window_spans: int = 1  # ingest the newest this many spans (a rolling window)
  skip_bad_spans: bool = False  # skip malformed, duplicate and empty spans and gaps
  skip_if_no_new_span: bool = True  # stop early when the last pushed model saw the newest

  def problems(self) -> List[str]:
    out = []
    if isinstance(self.window_spans, bool) or not isinstance(self.window_spans, int) \
        or self.window_spans < 1:
      out.append(f"data_spans.window_spans must be an integer >= 1, got {self.window_spans!r}")
    for name in ("skip_bad_spans", "skip_if_no_new_span"):
      if not isinstance(getattr(self, name), bool):
        out.append(f"data_spans.{name} must be true or false, got {getattr(self, name)!r}")
    return out


@dataclasses.dataclass(frozen=True)
class Span:
  number: int
  path: str


@dataclasses.dataclass
class Resolved:
  """The spans a run ingests, oldest first, and what was skipped and why."""
  pattern: str
  spans: List[Span]
  skipped: List[str] = dataclasses.field(default_factory=list)

  @property
  def newest(self) -> Span:
    return self.spans[-1]

  @property
  def numbers(self) -> str:
    """"3,4,5": how MLMD records them."""
    return ",".join(str(s.number) for s in self.spans)


def is_span_source(spec: str) -> bool:
  return spec.partition(":")[0] == SCHEME


def pattern_of(spec: str) -> str:
  scheme, _, pattern = spec.partition(":")
  if scheme != SCHEME or not pattern:
    raise SpanError(f"data source {spec!r}: expected {SCHEME}:<path with {SPAN_SPEC} or "
                    f"{''.join(DATE_SPECS)}>")
  return pattern


def check_pattern(pattern: str) -> None:
  """A pattern with {SPAN} once, or each of {YYYY} {MM} {DD} once, and never both."""
  counts = {spec: pattern.count(spec) for spec in (SPAN_SPEC,) + DATE_SPECS}
  by_span = counts[SPAN_SPEC] == 1 and not any(counts[s] for s in DATE_SPECS)
  by_date = counts[SPAN_SPEC] == 0 and all(counts[s] == 1 for s in DATE_SPECS)
  if not (by_span or by_date):
    raise SpanError(f"span pattern {pattern!r}: expected {SPAN_SPEC} once, or each of "
                    f"{', '.join(DATE_SPECS)} once (not both), e.g. "
                    f"/data/input/{{YYYY}}-{{MM}}-{{DD}}")


def _layout(pattern: str) -> Tuple[str, re.Pattern]:
  """(a glob with each spec as a wildcard, the regex that reads the span's fields)."""
  parts = re.split(r"(\{SPAN\}|\{YYYY\}|\{MM\}|\{DD\})", pattern)
  wildcard = "".join("*" if p in _SPEC_REGEX else glob_lib.escape(p) for p in parts)
  regex = "".join(_SPEC_REGEX.get(p, re.escape(p)) for p in parts)
  return wildcard, re.compile(regex + r"\Z")


def span_number(pattern: str, path: str) -> Optional[int]:
  """The span number `path` stands for under `pattern`; None when it does not fit."""
  match = _layout(pattern)[1].match(path)
  if match is None:
    return None
  if "span" in match.groupdict():
    return int(match["span"])
  try:
    day = datetime.date(int(match["year"]), int(match["month"]), int(match["day"]))
  except ValueError:  # month 13, February 30, ...
    return None
  return (day - EPOCH).days


def span_path(pattern: str, number: int) -> str:
  """The path span `number` would have (for errors naming a missing span)."""
  if SPAN_SPEC in pattern:
    return pattern.replace(SPAN_SPEC, str(number))
  day = EPOCH + datetime.timedelta(days=number)
  return (pattern.replace("{YYYY}", f"{day.year:04d}").replace("{MM}", f"{day.month:02d}")
          .replace("{DD}", f"{day.day:02d}"))


def is_empty(path: str) -> bool:
  """A file with no line after its header, or a directory with no such file."""
  if os.path.isdir(path):
    files = [os.path.join(path, f) for f in os.listdir(path) if not f.startswith(".")]
    return all(is_empty(f) for f in files if os.path.isfile(f))
  with open(path, "rb") as f:
    lines = [line for line, _ in zip(f, range(2)) if line.strip()]
  return len(lines) < 2 and not path.endswith((".data", ".dat"))  # MovieLens: no header


def resolve(pattern: str, config: SpanConfig,
            find: Callable[[str], List[str]] = glob_lib.glob,
            empty: Callable[[str], bool] = is_empty) -> Resolved:
  """The spans of `pattern` a run ingests (module docstring); SpanError otherwise."""
  check_pattern(pattern)
  wildcard, _ = _layout(pattern)
  problems, bad, by_number = [], set(), {}  # problems: what is wrong, naming the path
  for path in sorted(find(wildcard)):
    number = span_number(pattern, path)
    if number is None:
      problems.append(f"{path}: fits the layout {wildcard} but not the pattern {pattern} "
                      f"(expected {_expected(pattern)})")
    elif number in by_number:
      problems.append(f"{path}: span {number} again (also {by_number[number]})")
      bad.add(by_number[number])
    else:
      by_number[number] = path
  for number, path in sorted(by_number.items()):
    if empty(path):
      problems.append(f"{path}: span {number} is empty (no interactions after the header)")
      bad.add(path)
  good = [Span(n, p) for n, p in sorted(by_number.items()) if p not in bad]
  if problems and not config.skip_bad_spans:
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    raise SpanError(f"{problems[0]}{more}; fix or remove it, or set "
                    f"data_spans.skip_bad_spans: true to skip such spans")
  if not good:
    raise SpanError(f"span pattern {pattern}: no span found (looked for {wildcard}"
                    + (f"; skipped {len(problems)} bad" if problems else "") + ")")
  window = good[-config.window_spans:]
  gaps = [n for n in range(window[0].number, window[-1].number + 1)
          if n not in {s.number for s in window}]
  if gaps and not config.skip_bad_spans:
    raise SpanError(f"span {gaps[0]} ({span_path(pattern, gaps[0])}) is missing inside the "
                    f"window of spans {window[0].number}..{window[-1].number} "
                    f"(data_spans.window_spans: {config.window_spans}); add it, or set "
                    f"data_spans.skip_bad_spans: true to use the newest spans there are")
  skipped = problems + [f"span {n} ({span_path(pattern, n)}): missing" for n in gaps]
  return Resolved(pattern, window, skipped)


def _expected(pattern: str) -> str:
  if SPAN_SPEC in pattern:
    return "digits for {SPAN}"
  return "a real date, {YYYY} four digits, {MM} and {DD} two"
