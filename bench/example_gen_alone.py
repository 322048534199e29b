"""TimeSplitExampleGen alone: wall time and peak memory of its executor on N synthetic
interactions, on the DirectRunner with the pipeline's default Beam args (2 worker
processes). Faster to iterate on than bench/pipeline_scaling.py, which runs everything.

    python bench/example_gen_alone.py [--interactions 1000000] [--history 0] [--out DIR]

Prints seconds and peak RSS: of the process tree (summed), of this process (Beam's
runner, which holds grouped data between stages) and of the largest worker. To compare
with an earlier version of the component, run the same command with that version first
on the path, e.g. `git worktree add /tmp/before <commit>` and
the other version's own venv (`/tmp/before/.venv/bin/python bench/example_gen_alone.py`,
both installed with `pip install -e`); each run also reports a
digest of its output (order-independent), so two versions can be checked to write the
same examples.
"""
import argparse
import dataclasses
import glob
import hashlib
import json
import os
import shutil
import sys
import threading
import time

import psutil

from recsys_tfx import env

env.configure()  # a script is an entry point: set before TensorFlow loads

from google.protobuf import json_format  # noqa: E402
from tfx.proto import example_gen_pb2  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402

from recsys_tfx.components.ingest import sources  # noqa: E402
from recsys_tfx.components.time_split_example_gen import component as example_gen  # noqa: E402
from recsys_tfx.components.time_split_example_gen import executor as example_gen_executor  # noqa: E402,E501
from recsys_tfx.components.time_split_example_gen.options import Options  # noqa: E402
from recsys_tfx.pipeline import configs  # noqa: E402
from recsys_tfx.schema import canonical as dataset  # noqa: E402
from recsys_tfx.schema.time_split import SPLITS  # noqa: E402

GIB = 2 ** 30


class PeakMemory:
  """Samples this process and its children every 0.2 s until stopped."""

  def __init__(self):
    self.tree = self.runner = self.worker = 0
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._watch, daemon=True)

  def _watch(self):
    me = psutil.Process()
    while not self._stop.is_set():
      try:
        runner = me.memory_info().rss
        workers = [child.memory_info().rss for child in me.children(recursive=True)]
      except psutil.Error:
        continue
      self.tree = max(self.tree, runner + sum(workers))
      self.runner = max(self.runner, runner)
      self.worker = max([self.worker] + workers)
      time.sleep(0.2)

  def __enter__(self):
    self._thread.start()
    return self

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()


def output_digest(out: str) -> dict:
  """Per split: record count and a digest of the examples' parsed contents, in any order
  (feature maps serialize in no fixed order, so the bytes alone would differ)."""
  import tensorflow as tf
  digests = {}
  for split in SPLITS:
    files = sorted(glob.glob(os.path.join(out, f"Split-{split}", "*")))
    rows = sorted(
        repr(sorted((k, list(v.bytes_list.value) or list(v.int64_list.value)
                     or list(v.float_list.value))
                    for k, v in tf.train.Example.FromString(r.numpy()).features.feature.items()))
        for r in tf.data.TFRecordDataset(files, compression_type="GZIP"))
    digests[split] = [len(rows), hashlib.sha1("\n".join(rows).encode()).hexdigest()[:12]]
  return digests


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--interactions", type=int, default=1_000_000)
  parser.add_argument("--history", type=int, default=0,
                      help="history_length (0: none, as for the default two-tower)")
  parser.add_argument("--out", default="/tmp/example_gen_alone")
  args = parser.parse_args(argv)
  data = sources.load_source("synthetic", synthetic_interactions=args.interactions, seed=0)
  data_dir = dataset.write_canonical(data, os.path.join(args.out, "data"))["dir"]
  examples_dir = os.path.join(args.out, "examples")
  shutil.rmtree(examples_dir, ignore_errors=True)
  examples = standard_artifacts.Examples()
  examples.uri = examples_dir
  executor = example_gen_executor.Executor(example_gen_executor.Executor.Context(
      beam_pipeline_args=configs.PipelineConfig().beam_args))
  schema_file = configs.PipelineConfig().schema_file(data.schema_name)
  print(f"{args.interactions:,} interactions, history {args.history}: running ...", flush=True)
  start = time.monotonic()
  with PeakMemory() as peak:
    executor.Do({}, {"examples": [examples]}, {
        "input_base": data_dir,
        "input_config": json_format.MessageToJson(example_gen.input_config()),
        "output_config": json_format.MessageToJson(example_gen.output_config()),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "custom_config": json.dumps(dataclasses.asdict(
            Options(schema_file, seed=0, history_length=args.history)))})
  seconds = time.monotonic() - start
  print(json.dumps({"interactions": args.interactions, "seconds": round(seconds, 1),
                    "peak_gib_tree": round(peak.tree / GIB, 2),
                    "peak_gib_runner": round(peak.runner / GIB, 2),
                    "peak_gib_largest_worker": round(peak.worker / GIB, 2),
                    "output": output_digest(examples_dir)}))
  return 0


if __name__ == "__main__":
  sys.exit(main())
