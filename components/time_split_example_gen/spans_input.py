"""Dated spans resolved when TimeSplitExampleGen runs, not before: on Kubeflow nothing
runs ahead of the pipeline, so a scheduled run finds the newest span(s) of the pattern
itself (components/ingest/spans.py), reads them with the ingest readers and writes the
window's canonical copy to the component's input_base (the Kubeflow config's data_dir),
which it then reads, as the trainers downstream do. A local run resolves its spans
before the pipeline starts (pipeline/local_runner.py) and hands them over already
resolved, so this is not used there.

Files are read through tf.io.gfile (bucket URIs: gs://, s3://, ...), staged in a local
temporary directory for the readers, which read local files.
"""
import os
import tempfile

import tensorflow as tf

from recsys_tfx.components.ingest import sources, spans
from recsys_tfx.components.time_split_example_gen.options import Options
from recsys_tfx.schema import canonical


def is_empty(path: str) -> bool:
  """spans.is_empty through tf.io.gfile: a file with no line after its header (MovieLens
  .data/.dat files have no header), or a directory of such files."""
  if tf.io.gfile.isdir(path):
    return all(is_empty(os.path.join(path, name)) for name in tf.io.gfile.listdir(path)
               if not name.startswith(".") and not tf.io.gfile.isdir(os.path.join(path, name)))
  with tf.io.gfile.GFile(path, "rb") as f:
    lines = [line for line, _ in zip(f, range(2)) if line.strip()]
  return len(lines) < 2 and not path.endswith((".data", ".dat"))


def resolve(options: Options) -> spans.Resolved:
  config = spans.SpanConfig(window_spans=options.window_spans,
                            skip_bad_spans=options.skip_bad_spans)
  return spans.resolve(options.span_pattern, config, find=tf.io.gfile.glob, empty=is_empty)


def _stage(path: str, local: str) -> str:
  """A copy of span `path` (a file, or a directory's files) under `local`."""
  if not tf.io.gfile.isdir(path):
    target = os.path.join(local, os.path.basename(path.rstrip("/")))
    os.makedirs(local, exist_ok=True)
    tf.io.gfile.copy(path, target, overwrite=True)
    return target
  os.makedirs(local, exist_ok=True)
  for name in tf.io.gfile.listdir(path):
    if not tf.io.gfile.isdir(os.path.join(path, name)):
      tf.io.gfile.copy(os.path.join(path, name), os.path.join(local, name.rstrip("/")),
                       overwrite=True)
  return local


def materialize(options: Options, input_base: str) -> spans.Resolved:
  """Resolves the spans, and writes their canonical copy to input_base."""
  resolved = resolve(options)
  for skipped in resolved.skipped:
    print(f"TimeSplitExampleGen: skipped (skip_bad_spans): {skipped}", flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    staged = [spans.Span(s.number, _stage(s.path, os.path.join(tmp, "spans", str(s.number))))
              for s in resolved.spans]
    data = sources.load_spans(staged, pattern=resolved.pattern)
    written = canonical.write_canonical(data, os.path.join(tmp, "canonical"))["dir"]
    tf.io.gfile.makedirs(input_base)
    # meta.json last: a reader that finds it finds the tables it describes
    names = sorted(os.listdir(written), key=lambda name: name == "meta.json")
    for name in names:
      tf.io.gfile.copy(os.path.join(written, name), os.path.join(input_base, name),
                       overwrite=True)
  print(f"TimeSplitExampleGen: spans {resolved.numbers} of {resolved.pattern} -> "
        f"{input_base}", flush=True)
  return resolved
