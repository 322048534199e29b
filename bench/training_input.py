"""Training input and training speed of the two-tower Trainer, on a pipeline run's
Transform output.

    python bench/training_input.py [--transform-dir runs/demo/Transform] [--run-id ID]
                                   [--schema PATH] [--quick] [--epochs 4] [--steps 60]
                                   [--rounds 5] [--json out.json]

Data: <transform-dir>/transformed_examples/<id>/Split-train/*.gz and the
TFTransformOutput in <transform-dir>/transform_graph/<id> (default: the newest id), and
the run's curated schema (<transform-dir>/../ImportSchemaGen/schema/<newest>/schema.pbtxt).

Part 1, input only (no model): examples/s over --epochs passes of one dataset object,
as Keras fit iterates it (run_fn also makes one pass to count items first), with the
first pass and the later ones reported apart:
  previous      transformed_dataset as it was: TFXIO (a real TFX DataAccessor's
                tf_dataset_factory, as the Trainer's fn_args has) reads, shuffles
                (250K buffer) and parses every pass, parsing on one thread
  parsed cache  TFXIO reads and parses once; cached, unbatched for a full shuffle, rebatched
  no cache      parallel reads, full shuffle of the records, batch, parallel parse
  shipped       trainer.task.transformed_dataset as it is now
each at batch 1024, and the previous and shipped inputs at 4096 too.

Part 2, training (TwoTowerModel built as run_fn builds it, Adam, fed by the shipped
input): steady-state examples/s over --steps steps (after a warm-up) at batch 1024
(lr 0.005) vs 4096 (lr 0.02, scaled with the batch), jit_compile off and on; and one
whole model.fit epoch (start-up included) fed by the previous vs the shipped input.
Variants are interleaved over --rounds rounds; the tables show medians, and ratios
measured in this run.
"""
import argparse
import glob
import json
import os
import re
import statistics
import sys
import time
from typing import Callable, Dict, List

from recsys_tfx import env

env.configure()  # a script is an entry point: set before TensorFlow loads

import numpy as np  # noqa: E402

from recsys_tfx.schema import features as feats  # noqa: E402
from recsys_tfx.trainer import task  # noqa: E402
from recsys_tfx.trainer.config import TwoTowerConfig  # noqa: E402
from recsys_tfx.trainer.models.two_tower import TwoTowerModel  # noqa: E402
from recsys_tfx.trainer.preprocessing import NUM_OOV_BUCKETS  # noqa: E402

import tensorflow as tf  # noqa: E402
import tensorflow_transform as tft  # noqa: E402
from tfx.components.trainer import fn_args_utils  # noqa: E402
from tfx.components.util import examples_utils, tfxio_utils  # noqa: E402
from tfx.proto import example_gen_pb2  # noqa: E402
from tfx.types import standard_artifacts  # noqa: E402
from tfx_bsl.public import tfxio  # noqa: E402

BASE_BATCH, BASE_LR = 1024, 0.005


def previous_transformed_dataset(fn_args, files, tf_transform_output, batch_size: int,
                                 shuffle: bool, seed: int):
  """trainer.task.transformed_dataset before this benchmark, for comparison."""
  return fn_args.data_accessor.tf_dataset_factory(
      files,
      tfxio.TensorFlowDatasetOptions(batch_size=batch_size, shuffle=shuffle,
                                     shuffle_buffer_size=task.SHUFFLE_BUFFER, shuffle_seed=seed,
                                     num_epochs=1),
      tf_transform_output.transformed_metadata.schema).prefetch(tf.data.AUTOTUNE)


def parsed_cache_dataset(fn_args, files, tf_transform_output, batch_size: int, shuffle: bool,
                         seed: int):
  """TFXIO reads and parses once (large batches), cached; unbatched for a full shuffle."""
  parsed = fn_args.data_accessor.tf_dataset_factory(
      files, tfxio.TensorFlowDatasetOptions(batch_size=8192, shuffle=False, num_epochs=1),
      tf_transform_output.transformed_metadata.schema)
  dataset = parsed.cache().unbatch()
  if shuffle:
    dataset = dataset.shuffle(task.SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
  return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def uncached_records_dataset(fn_args, files, tf_transform_output, batch_size: int,
                             shuffle: bool, seed: int):
  """The shipped input without its cache: parallel reads and parallel parsing only."""
  del fn_args
  names = sorted(name for pattern in files for name in tf.io.gfile.glob(pattern))
  records = tf.data.TFRecordDataset(names, "GZIP", num_parallel_reads=tf.data.AUTOTUNE)
  if shuffle:
    records = records.shuffle(task.SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
  spec = tf_transform_output.transformed_feature_spec()
  return records.batch(batch_size).map(lambda batch: tf.io.parse_example(batch, spec),
                                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                                           tf.data.AUTOTUNE)


INPUTS = {"previous": previous_transformed_dataset, "parsed cache": parsed_cache_dataset,
          "no cache": uncached_records_dataset, "shipped": task.transformed_dataset}


def newest(directory: str) -> str:
  ids = [d for d in os.listdir(directory) if d.isdigit()]
  if not ids:
    sys.exit(f"error: no artifact ids under {directory}")
  return os.path.join(directory, max(ids, key=int))


class FnArgs:
  """What transformed_dataset reads from the Trainer's fn_args: a real DataAccessor for an
  Examples artifact at `examples_uri` (tf.Example records, TFX's default payload)."""

  def __init__(self, examples_uri: str):
    examples = standard_artifacts.Examples()
    examples.uri = examples_uri
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    self.data_accessor = fn_args_utils.DataAccessor(
        tf_dataset_factory=tfxio_utils.get_tf_dataset_factory_from_artifact([examples], []),
        record_batch_factory=None, data_view_decode_fn=None)


def count(batch: Dict[str, tf.Tensor]) -> int:
  return int(tf.shape(batch[feats.ITEM_ID])[0])


def time_passes(dataset: tf.data.Dataset, epochs: int) -> List[float]:
  """Seconds of each full pass; checks every pass yields the same number of examples."""
  out, sizes = [], set()
  for _ in range(epochs):
    began = time.perf_counter()
    sizes.add(sum(count(batch) for batch in dataset))
    out.append(time.perf_counter() - began)
  assert len(sizes) == 1, sizes
  return out


def input_rows(fn_args, files, tft_output, num_examples: int, args) -> List[dict]:
  variants = [(name, BASE_BATCH) for name in INPUTS] + [("previous", 4096), ("shipped", 4096)]
  seconds = {v: [] for v in variants}
  for round_ in range(args.rounds):
    for name, batch in variants[round_ % len(variants):] + variants[:round_ % len(variants)]:
      dataset = INPUTS[name](fn_args, files, tft_output, batch, True, args.seed)
      seconds[(name, batch)].append(time_passes(dataset, args.epochs))
    print(f"  input round {round_ + 1}/{args.rounds} done", flush=True)
  rows = []
  for (name, batch), runs in seconds.items():
    first = statistics.median(r[0] for r in runs)
    later = statistics.median(statistics.mean(r[1:]) for r in runs) if args.epochs > 1 else first
    total = statistics.median(sum(r) for r in runs)
    rows.append({"part": "input", "variant": name, "batch": batch,
                 "first_pass_eps": num_examples / first, "later_pass_eps": num_examples / later,
                 "all_passes_eps": num_examples * args.epochs / total})
  base = next(r for r in rows if r["variant"] == "previous" and r["batch"] == BASE_BATCH)
  for r in rows:
    r["ratio"] = r["all_passes_eps"] / base["all_passes_eps"]
    r["ratio_later"] = r["later_pass_eps"] / base["later_pass_eps"]
  return rows


def item_counts(fn_args, files, tft_output, vocab_sizes) -> np.ndarray:
  """What run_fn computes for the logQ correction: item index frequencies."""
  items = [b[feats.ITEM_ID].numpy() for b in task.transformed_dataset(
      fn_args, files, tft_output, 8192, False, 0)]
  return np.bincount(np.concatenate(items),
                     minlength=vocab_sizes[feats.ITEM_ID] + NUM_OOV_BUCKETS)


def new_model(all_features, vocab_sizes, counts, learning_rate: float, jit: bool):
  model = TwoTowerModel(all_features, vocab_sizes, counts, TwoTowerConfig(learning_rate=learning_rate))
  model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=learning_rate),
                jit_compile=jit)
  return model


class BatchEnds(tf.keras.callbacks.Callback):
  """The wall-clock time at the end of every training step."""

  def on_train_begin(self, logs=None):
    self.times = []

  def on_train_batch_end(self, batch, logs=None):
    self.times.append(time.perf_counter())


def steady_examples_per_s(model, data, steps: int, batch: int) -> float:
  """Training examples/s between the first and the last of steps + 1 steps: the model's
  steady state, without fit's start-up."""
  ends = BatchEnds()
  model.fit(data, steps_per_epoch=steps + 1, epochs=1, verbose=0, callbacks=[ends])
  return steps * batch / (ends.times[-1] - ends.times[0])


def epoch_examples_per_s(model, data, num_examples: int) -> float:
  """One whole model.fit epoch, start-up and the first batch's wait included."""
  began = time.perf_counter()
  model.fit(data, epochs=1, verbose=0)
  return num_examples / (time.perf_counter() - began)


def short_error(e: Exception) -> str:
  """XLA's own reason when it names one (its message is a long traceback)."""
  text = str(e)
  found = re.search(r"Detected unsupported operations[^:]*: (\w+)", text)
  if found:
    return f"XLA cannot compile {found.group(1)} (no XLA kernel)"
  return f"{type(e).__name__}: {text.strip().splitlines()[0][:160]}"


def training_rows(fn_args, files, tft_output, schema_path: str, num_examples: int,
                  args) -> List[dict]:
  all_features = feats.load_features(schema_path)
  vocab_sizes = task.vocabulary_sizes(tft_output, all_features)
  counts = item_counts(fn_args, files, tft_output, vocab_sizes)
  tf.keras.utils.set_random_seed(args.seed)

  def steps_run(batch: int, jit: bool) -> Callable[[], float]:
    # The learning rate scales with the batch, as one would when raising batch_size.
    model = new_model(all_features, vocab_sizes, counts, BASE_LR * batch / BASE_BATCH, jit)
    data = task.transformed_dataset(fn_args, files, tft_output, batch, True, args.seed)
    data = data.repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # builds, traces, compiles
    return lambda: steady_examples_per_s(model, data, args.steps, batch)

  def epoch_run(name: str) -> Callable[[], float]:
    model = new_model(all_features, vocab_sizes, counts, BASE_LR, False)
    data = INPUTS[name](fn_args, files, tft_output, BASE_BATCH, True, args.seed)
    model.fit(data.take(2), epochs=1, verbose=0)
    return lambda: epoch_examples_per_s(model, data, num_examples)

  plans = {f"steps, batch {b}, jit {'on' if jit else 'off'}": (steps_run, (b, jit))
           for b in (BASE_BATCH, 4096) for jit in (False, True)}
  plans.update({f"one epoch, {name} input, batch {BASE_BATCH}": (epoch_run, (name,))
                for name in ("previous", "shipped")})
  ready, rows = {}, []
  for name, (make, make_args) in plans.items():
    try:
      ready[name] = make(*make_args)
    except Exception as e:  # jit_compile: XLA may not compile every op
      rows.append({"part": "training", "variant": name, "error": short_error(e)})
      print(f"  {name}: failed: {rows[-1]['error']}", flush=True)
  speeds = {name: [] for name in ready}
  order = list(ready)
  for round_ in range(args.rounds):
    for name in order[round_ % len(order):] + order[:round_ % len(order)]:
      speeds[name].append(ready[name]())
    print(f"  training round {round_ + 1}/{args.rounds} done", flush=True)
  rows = [{"part": "training", "variant": name, "eps": statistics.median(v)}
          for name, v in speeds.items()] + rows
  by = {r["variant"]: r for r in rows}
  for r in rows:
    base = by[f"one epoch, previous input, batch {BASE_BATCH}" if r["variant"].startswith(
        "one epoch") else f"steps, batch {BASE_BATCH}, jit off"]
    if "eps" in r and "eps" in base:
      r["ratio"] = r["eps"] / base["eps"]
  return rows


def report(rows: List[dict], num_examples: int, epochs: int) -> str:
  lines = ["", f"input only: {num_examples:,} training examples, {epochs} passes per dataset; "
           "examples/s; ratios vs previous at 1024",
           f"{'input':<14} {'batch':>5} {'first pass':>11} {'later passes':>13} "
           f"{'all passes':>11} {'x all':>6} {'x later':>7}"]
  for r in (r for r in rows if r["part"] == "input"):
    lines.append(f"{r['variant']:<14} {r['batch']:>5} {r['first_pass_eps']:>11,.0f} "
                 f"{r['later_pass_eps']:>13,.0f} {r['all_passes_eps']:>11,.0f} "
                 f"{r['ratio']:>6.2f} {r['ratio_later']:>7.2f}")
  lines += ["", "training (TwoTowerModel, model.fit): examples/s (ratio vs the first row of "
            "its kind)", f"{'run':<42} {'examples/s':>11} {'ratio':>6}"]
  for r in (r for r in rows if r["part"] == "training"):
    if "error" in r:
      lines.append(f"{r['variant']:<42} failed: {r['error']}")
    else:
      ratio = f"{r['ratio']:.2f}" if "ratio" in r else "-"
      lines.append(f"{r['variant']:<42} {r['eps']:>11,.0f} {ratio:>6}")
  return "\n".join(lines)


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--transform-dir", default=os.path.join(REPO, "runs/demo/Transform"),
                      help="a Transform component's output directory")
  parser.add_argument("--run-id", help="artifact id under it (default: the newest)")
  parser.add_argument("--schema", help="curated schema (default: the newest ImportSchemaGen "
                                       "schema next to --transform-dir)")
  parser.add_argument("--quick", action="store_true",
                      help="fewer steps and rounds: about a minute")
  parser.add_argument("--epochs", type=int, help="passes per dataset (4)")
  parser.add_argument("--steps", type=int, help="timed training steps (60; 15 with --quick)")
  parser.add_argument("--rounds", type=int, help="interleaved rounds (5; 2 with --quick)")
  parser.add_argument("--skip-training", action="store_true", help="input only")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--json", help="also write the rows here")
  args = parser.parse_args(argv)
  args.epochs = args.epochs or 4  # run_fn: a pass counting items, then the demo's 3 epochs
  args.steps = args.steps or (15 if args.quick else 60)
  args.rounds = args.rounds or (2 if args.quick else 5)

  def artifact(kind: str) -> str:
    directory = os.path.join(args.transform_dir, kind)
    return os.path.join(directory, args.run_id) if args.run_id else newest(directory)
  examples_dir, graph_dir = artifact("transformed_examples"), artifact("transform_graph")
  schema = args.schema or os.path.join(
      newest(os.path.join(os.path.dirname(os.path.abspath(args.transform_dir)),
                          "ImportSchemaGen", "schema")), "schema.pbtxt")
  files = [os.path.join(examples_dir, "Split-train", "*")]
  if not glob.glob(files[0]):
    return print(f"error: no files match {files[0]}", file=sys.stderr) or 2

  started = time.monotonic()
  fn_args = FnArgs(examples_dir)
  tft_output = tft.TFTransformOutput(graph_dir)
  num_examples = sum(count(b) for b in previous_transformed_dataset(
      fn_args, files, tft_output, 8192, False, 0))
  print(f"{os.cpu_count()} CPUs; {files[0]}: {num_examples:,} examples; {graph_dir}; {schema}",
        flush=True)
  rows = input_rows(fn_args, files, tft_output, num_examples, args)
  if not args.skip_training:
    rows += training_rows(fn_args, files, tft_output, schema, num_examples, args)
  print(report(rows, num_examples, args.epochs))
  print(f"\n(total {time.monotonic() - started:.0f}s)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=1)
  return 0


if __name__ == "__main__":
  sys.exit(main())
