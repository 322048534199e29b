"""TimeSplitExampleGen's executor: reads the canonical interactions, splits each user's
history by time (schema/time_split.py), adds the slice features and, when asked, each
example's history, joins item and user features and writes tf.Examples typed by the
curated schema.
"""
import csv
import dataclasses
import json
import os
from typing import Any, Dict, List

import apache_beam as beam
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.util import examples_utils
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from recsys_tfx.components.time_split_example_gen import options as options_lib
from recsys_tfx.components.time_split_example_gen import spans_input
from recsys_tfx.schema import features as feats
from recsys_tfx.schema.time_split import (MULTI_VALUE_SEPARATOR, SPLITS, add_slice_features,
                                          assign_splits, with_history)

OUTPUT_FILE_PREFIX = "data_tfrecord"  # what TFX's own ExampleGens name their files


def _read_table(path: str, key: str) -> Dict[str, Dict[str, str]]:
  if not tf.io.gfile.exists(path):
    return {}
  with tf.io.gfile.GFile(path) as f:
    return {row[key]: row for row in csv.DictReader(f)}


class _ExampleEncoder:
  """Turns a joined row of strings into a tf.Example typed by the schema."""

  def __init__(self, schema: schema_pb2.Schema):
    self._types = {f.name: f.type for f in schema.feature}
    self._multi = {f.name for f in schema.feature
                   if f.type == schema_pb2.BYTES and not f.HasField("shape")}

  def __call__(self, row: Dict[str, str]) -> tf.train.Example:
    feature = {}
    for name, value in row.items():
      kind = self._types.get(name, schema_pb2.BYTES)
      if kind == schema_pb2.INT:
        feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(float(value))]))
      elif kind == schema_pb2.FLOAT:
        feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
      else:
        values = value.split(MULTI_VALUE_SEPARATOR) if name in self._multi else [value]
        feature[name] = tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[v.encode() for v in values if v != ""]))
    return tf.train.Example(features=tf.train.Features(feature=feature))


class _JoinFeatures(beam.DoFn):
  """Adds item and user feature columns to each interaction (small tables, loaded once)."""

  def __init__(self, input_base: str):
    self._input_base = input_base

  def setup(self):
    self._items = _read_table(os.path.join(self._input_base, "items.csv"), feats.ITEM_ID)
    self._users = _read_table(os.path.join(self._input_base, "users.csv"), feats.USER_ID)

  def process(self, row: Dict[str, str]):
    joined = dict(row)
    for table, key in ((self._items, feats.ITEM_ID), (self._users, feats.USER_ID)):
      extra = table.get(row[key], {})
      joined.update({k: v for k, v in extra.items() if k != key and k != "title"})
    yield joined


def _field(line: str, column: int) -> str:
  return next(csv.reader([line]))[column]


def _parse_lines(lines, header: List[str]):
  for values in csv.reader(lines):
    yield dict(zip(header, values))


class Executor(base_example_gen_executor.BaseExampleGenExecutor):

  def GetInputSourceToExamplePTransform(self) -> beam.PTransform:
    # Required by the base class, never called: splitting by time needs every row of a
    # user at once, so GenerateExamplesByBeam reads the input itself.
    raise RuntimeError("TimeSplitExampleGen reads its input in GenerateExamplesByBeam")

  def GenerateExamplesByBeam(self, pipeline: beam.Pipeline,
                             exec_properties: Dict[str, Any]) -> Dict[str, beam.PCollection]:
    options = options_lib.from_exec_properties(exec_properties)
    seed, min_to_hold_out = options.seed, options.min_interactions_to_hold_out
    history_length = options.history_length  # 0: no history feature
    schema = feats.load_schema(options.schema_file)
    input_base = exec_properties["input_base"]
    interactions = os.path.join(input_base, "interactions.csv")
    with tf.io.gfile.GFile(interactions) as f:
      header = next(csv.reader(f))
    user_column = header.index(feats.USER_ID)

    encode = _ExampleEncoder(schema)

    def grouped_by_user(label: str) -> beam.PCollection:
      # Grouped as raw lines and parsed per user afterwards: a line costs a tenth of the
      # memory of its parsed dict, and the group holds every row of the data at once.
      return (pipeline
              | f"Read[{label}]" >> beam.io.ReadFromText(interactions, skip_header_lines=1)
              | f"KeyByUser[{label}]" >> beam.Map(lambda line: (_field(line, user_column), line))
              | f"GroupByUser[{label}]" >> beam.GroupByKey())

    def split_user(kv):
      return assign_splits(list(_parse_lines(kv[1], header)), seed, min_to_hold_out)

    # Training counts per item and per user, for the slice features (side inputs). They
    # come from a second read of the input, not from the split rows below: a side input
    # computed from those rows would make the runner hold every one of them in memory
    # until the counts were done (at 5M interactions that, with the write's reshuffle,
    # took ExampleGen to 15 GiB).
    train_keys = grouped_by_user("counts") | "TrainKeys" >> beam.FlatMap(
        lambda kv: [(row[feats.USER_ID], row[feats.ITEM_ID])
                    for split, row in split_user(kv) if split == "train"])
    item_counts = (train_keys | "ItemKeys" >> beam.Map(lambda key: key[1])
                   | "CountItems" >> beam.combiners.Count.PerElement())
    user_counts = (train_keys | "UserKeys" >> beam.Map(lambda key: key[0])
                   | "CountUsers" >> beam.combiners.Count.PerElement())

    split_rows = grouped_by_user("examples") | "SplitByTime" >> beam.FlatMap(
        lambda kv: with_history(split_user(kv), history_length))
    partitions = split_rows | "Partition" >> beam.Partition(
        lambda split_row, _: SPLITS.index(split_row[0]), len(SPLITS))
    result = {}
    for name, part in zip(SPLITS, partitions):
      result[name] = (
          part
          | f"Drop[{name}]" >> beam.Map(lambda split_row: split_row[1])
          | f"Slices[{name}]" >> beam.Map(add_slice_features,
                                          beam.pvalue.AsDict(item_counts),
                                          beam.pvalue.AsDict(user_counts))
          | f"Join[{name}]" >> beam.ParDo(_JoinFeatures(input_base))
          | f"Encode[{name}]" >> beam.Map(encode))
    return result

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
    """The base class's Do, minus the Reshuffle its WriteSplit puts before each write.
    On the DirectRunner that Reshuffle holds every serialized example in memory at once
    and reorders nothing (insertion order survives its grouping); the Trainer shuffles
    its input anyway."""
    self._log_startup(input_dict, output_dict, exec_properties)
    options = options_lib.from_exec_properties(exec_properties)
    if options.span_pattern and not options.spans:  # a Kubeflow run: resolved now
      resolved = spans_input.materialize(options, exec_properties["input_base"])
      options = dataclasses.replace(options, spans=tuple((s.number, s.path)
                                                         for s in resolved.spans))
    examples = artifact_utils.get_single_instance(output_dict["examples"])
    examples.split_names = artifact_utils.encode_split_names(list(SPLITS))
    with self._make_beam_pipeline() as pipeline:
      for name, split in self.GenerateExamplesByBeam(pipeline, exec_properties).items():
        _ = (split
             | f"Serialize[{name}]" >> beam.Map(lambda example: example.SerializeToString())
             | f"Write[{name}]" >> beam.io.WriteToTFRecord(
                 os.path.join(artifact_utils.get_split_uri([examples], name),
                              OUTPUT_FILE_PREFIX),
                 file_name_suffix=".gz"))
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    record_spans(examples, options)


# Custom properties of the Examples artifact (besides TFX's own `span`, the newest).
SPANS_PROPERTY, SPAN_PATHS_PROPERTY, SPAN_PATTERN_PROPERTY = "spans", "span_paths", "span_pattern"


def record_spans(examples: types.Artifact, options: options_lib.Options) -> None:
  """Which spans the examples hold, for MLMD (`recsys metadata runs / lineage` show them
  and the next run compares its newest span with them)."""
  if not options.spans:
    return
  examples.span = max(number for number, _ in options.spans)
  examples.set_string_custom_property(SPANS_PROPERTY,
                                      ",".join(str(n) for n, _ in options.spans))
  examples.set_string_custom_property(SPAN_PATHS_PROPERTY,
                                      json.dumps({str(n): p for n, p in options.spans}))
  examples.set_string_custom_property(SPAN_PATTERN_PROPERTY, options.span_pattern)
