"""ExampleGen that splits by time, per user: a user's later interactions never train a
model that is scored on their earlier ones.

Input: a canonical data directory (interactions.csv, items.csv, optional users.csv; see
components/ingest/dataset.py). Each interaction is joined with its item's and user's
features and written as a tf.Example typed by the curated schema.

Slice features: each example also carries three strings that evaluation slices by, all
computed from the train split only: `item_popularity` (the item's training interactions:
cold 0 / rare 1-4 / mid 5-49 / popular 50+), `user_activity` (the user's training
interactions: new <5 / light 5-19 / regular 20-99 / heavy 100+) and `daypart` (from hour).

Split (leave-last-out, the protocol of NCF / SASRec / BERT4Rec papers): each user's
interactions are ordered by time, ties broken by a seeded hash of (user, item) — never by
item id or file order, which correlate with popularity and release date. The last one
goes to `test`, the one before to `eval`, the rest to `train`. Users with fewer than
`min_interactions_to_hold_out` interactions stay wholly in `train`.

History (only when `history_length` > 0, i.e. for a sequential retrieval model): each
example also carries the ids of the user's previous `history_length` items, oldest
first, so a held-out example's history holds what came before it and never itself.
"""
import csv
import hashlib
import os
from typing import Any, Dict, Iterable, List, Tuple

import apache_beam as beam
import tensorflow as tf
from tensorflow_metadata.proto.v0 import schema_pb2
from tfx import types
from tfx.components.example_gen import base_example_gen_executor
from tfx.components.example_gen.component import FileBasedExampleGen
from tfx.dsl.components.base import executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils
from tfx.components.util import examples_utils
from tfx.utils import json_utils

from trainer import features as feats

SPLITS = ("train", "eval", "test")
OUTPUT_FILE_PREFIX = "data_tfrecord"  # what TFX's own ExampleGens name their files
MULTI_VALUE_SEPARATOR = "|"


def tie_break(seed: int, user_id: str, item_id: str) -> int:
  """A deterministic order for equal timestamps that carries no signal."""
  digest = hashlib.blake2b(f"{seed}|{user_id}|{item_id}".encode(), digest_size=8).digest()
  return int.from_bytes(digest, "big")


def time_order(rows: List[Dict[str, str]], seed: int) -> List[Dict[str, str]]:
  """One user's rows by time, ties broken by `tie_break`."""
  return sorted(
      rows, key=lambda r: (int(r["timestamp"]), tie_break(seed, r["user_id"], r["item_id"])))


def assign_splits(rows: List[Dict[str, str]], seed: int, min_to_hold_out: int
                  ) -> Iterable[Tuple[str, Dict[str, str]]]:
  """One user's rows -> (split, row) in time order."""
  ordered = time_order(rows, seed)
  n = len(ordered)
  for i, row in enumerate(ordered):
    if n < min_to_hold_out or i < n - 2:
      yield "train", row
    elif i == n - 2:
      yield "eval", row
    else:
      yield "test", row


ITEM_POPULARITY = "item_popularity"
USER_ACTIVITY = "user_activity"
DAYPART = "daypart"
SLICE_FEATURES = (ITEM_POPULARITY, USER_ACTIVITY, DAYPART)


def bucket(count: int, edges, labels) -> str:
  """The label of the first edge the count is below (the last label otherwise)."""
  for edge, label in zip(edges, labels):
    if count < edge:
      return label
  return labels[-1]


def popularity_bucket(count: int) -> str:
  return bucket(count, (1, 5, 50), ("cold", "rare", "mid", "popular"))


def activity_bucket(count: int) -> str:
  return bucket(count, (5, 20, 100), ("new", "light", "regular", "heavy"))


def daypart(hour: int) -> str:
  return bucket(hour, (6, 12, 18), ("night", "morning", "afternoon", "evening"))


def add_slice_features(row: Dict[str, str], item_counts: Dict[str, int],
                       user_counts: Dict[str, int]) -> Dict[str, str]:
  out = dict(row)
  out[ITEM_POPULARITY] = popularity_bucket(item_counts.get(row[feats.ITEM_ID], 0))
  out[USER_ACTIVITY] = activity_bucket(user_counts.get(row[feats.USER_ID], 0))
  out[DAYPART] = daypart(int(float(row["hour"])))
  return out


def with_history(split_rows: Iterable[Tuple[str, Dict[str, str]]], length: int
                 ) -> Iterable[Tuple[str, Dict[str, str]]]:
  """Adds `history` to each of one user's time-ordered rows: the ids of the user's
  previous `length` items, oldest first. Only earlier rows count, so an example's own
  item (and a held-out one's) is never in its history."""
  previous: List[str] = []
  for split, row in split_rows:
    if not length:
      yield split, row
      continue
    out = dict(row)
    out[feats.HISTORY] = MULTI_VALUE_SEPARATOR.join(previous[-length:])
    previous.append(row[feats.ITEM_ID])
    yield split, out


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
    config = json_utils.loads(exec_properties.get("custom_config") or "null") or {}
    seed = int(config.get("seed", 0))
    min_to_hold_out = int(config.get("min_interactions_to_hold_out", 3))
    history_length = int(config.get("history_length", 0))  # 0: no history feature
    schema = feats.load_schema(config["schema_file"])
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


class TimeSplitExampleGen(FileBasedExampleGen):
  """FileBasedExampleGen whose executor splits each user's history by time."""
  EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)


def output_config() -> example_gen_pb2.Output:
  """Names the three splits; the executor decides membership, so buckets are unused."""
  return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
      example_gen_pb2.SplitConfig.Split(name=name, hash_buckets=1) for name in SPLITS]))


def input_config() -> example_gen_pb2.Input:
  return example_gen_pb2.Input(splits=[
      example_gen_pb2.Input.Split(name="interactions", pattern="interactions.csv")])
