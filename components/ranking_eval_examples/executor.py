"""RankingEvalExamples' executor: for each held-out test interaction, the retrieval
model's candidate list as the funnel would build it, one tf.Example per candidate
(component.py says what each carries)."""
import os
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from recsys_tfx.components import evaluation_data as data
from recsys_tfx.schema import canonical
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.schema import time_split
from recsys_tfx.trainer import export

ALL, SAMPLE = "test", "sample"  # every list; the seeded sample TFMA evaluates
RETRIEVAL_POSITION = "retrieval_position"  # 0-based place in the retrieval order
POPULARITY = "popularity_score"  # training count with its seeded tie-break
QUERY_BATCH = 16


def _bytes(values):
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=[str(v).encode() for v in values]))


def item_features(items: pd.DataFrame, schema_features) -> Dict[str, Dict[str, tf.train.Feature]]:
  """item id -> its item-role features as tf.train.Features, typed by the schema."""
  out = {}
  item_cols = [f for f in schema_features if f.role == "item" and f.name in items.columns]
  for row in items.itertuples(index=False):
    row = row._asdict()
    features = {}
    for f in item_cols:
      value = row[f.name]
      if f.encoding == "multi":
        features[f.name] = _bytes([t for t in str(value).split("|") if t])
      elif f.dtype == "int64":
        features[f.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
      elif f.dtype == "float32":
        features[f.name] = tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
      else:
        features[f.name] = _bytes([value])
    out[str(row[feats.ITEM_ID])] = features
  return out


class Executor(base_executor.BaseExecutor):

  def Do(self, input_dict: Dict[str, List[Any]], output_dict: Dict[str, List[Any]],
         exec_properties: Dict[str, Any]) -> None:
    write_examples(artifact_utils.get_single_instance(input_dict["examples"]),
                   artifact_utils.get_single_instance(input_dict["retrieval_model"]),
                   artifact_utils.get_single_instance(input_dict["schema"]),
                   artifact_utils.get_single_instance(output_dict["ranking_examples"]),
                   data_dir=exec_properties["data_dir"], seed=int(exec_properties["seed"]),
                   sample_users=int(exec_properties["sample_users"]))


def candidate_lists(retrieval, held_out: data.HeldOut):
  """For each test row: (candidate ids, source scores [c, S], source ranks [c, S]) in the
  retrieval order, minus the items the user interacted with before."""
  signature, inputs = query(retrieval, held_out.test, held_out.context)
  seen = held_out.before_test().groupby(feats.USER_ID)[feats.ITEM_ID].agg(set)
  for start in range(0, len(held_out.test), QUERY_BATCH):
    rows = slice(start, start + QUERY_BATCH)
    out = retrieval.signatures[signature](**{k: tf.constant(v[rows]) for k, v in inputs.items()})
    ids = out[contract.ITEM_IDS].numpy()
    scores, ranks = out[contract.SOURCE_SCORES].numpy(), out[contract.SOURCE_RANKS].numpy()
    for r, user in enumerate(held_out.test[feats.USER_ID].to_numpy()[rows]):
      before = seen.get(user, set())
      keep = [c for c, item in enumerate(ids[r])
              if item and item.decode() not in before]
      yield ([ids[r][c].decode() for c in keep], scores[r][keep], ranks[r][keep])


def query(retrieval, test: pd.DataFrame, context: List[str]):
  """The candidates signature to call and its inputs: a model that reads history is asked
  with each held-out example's own history (the items before it), any other by user id."""
  inputs = {c: test[c].to_numpy() for c in context}
  if contract.CANDIDATES_WITH_HISTORY in retrieval.signatures:
    inputs[feats.HISTORY] = data.string_matrix(test[feats.HISTORY].tolist())
    return contract.CANDIDATES_WITH_HISTORY, inputs
  inputs[feats.USER_ID] = test[feats.USER_ID].to_numpy().astype(object)
  return contract.CANDIDATES_WITH_CONTEXT, inputs


def _floats(values) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def write_examples(examples, retrieval_model, schema, ranking_examples, data_dir: str,
                   seed: int, sample_users: int) -> None:
  schema_file = io_utils.get_only_uri_in_dir(schema.uri)
  schema_features = feats.load_features(schema_file)
  items = canonical.read_canonical(data_dir).items
  by_item = item_features(items, schema_features)
  held_out = data.read_held_out(examples, schema_file)
  retrieval = export.load_model(path_utils.serving_model_path(retrieval_model.uri))
  catalogue = {item: i for i, item in enumerate(items[feats.ITEM_ID].astype(str))}
  popularity = data.popularity(held_out.train, catalogue, seed)
  train_counts = held_out.train[feats.ITEM_ID].value_counts().to_dict()
  users = held_out.test[feats.USER_ID].tolist()
  sample = set(users) if not 0 < sample_users < len(users) else set(
      np.random.default_rng([seed, 1]).choice(users, sample_users, replace=False))

  positives = {}
  source = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], ALL), "*"))
  for record in tf.data.TFRecordDataset(source, compression_type="GZIP"):
    example = tf.train.Example.FromString(record.numpy())
    positives[example.features.feature[feats.USER_ID].bytes_list.value[0].decode()] = example

  ranking_examples.split_names = artifact_utils.encode_split_names([ALL, SAMPLE])
  writers = {}
  for split in (ALL, SAMPLE):
    out_dir = artifact_utils.get_split_uri([ranking_examples], split)
    tf.io.gfile.makedirs(out_dir)
    writers[split] = tf.io.TFRecordWriter(os.path.join(out_dir, "data.tfrecord.gz"),
                                          options=tf.io.TFRecordOptions(compression_type="GZIP"))
  found = candidates = 0
  for user, target, (ids, scores, ranks) in zip(users, held_out.test[feats.ITEM_ID],
                                                candidate_lists(retrieval, held_out)):
    candidates += len(ids)
    if target not in ids:
      continue  # retrieval missed it: no order of these candidates shows it
    found += 1
    for position, (item, score, rank) in enumerate(zip(ids, scores, ranks)):
      example = tf.train.Example()
      example.CopyFrom(positives[user])
      feature = example.features.feature
      for name, value in by_item[item].items():
        feature[name].CopyFrom(value)
      feature[feats.ITEM_ID].CopyFrom(_bytes([item]))
      feature[feats.LABEL].CopyFrom(_floats([1.0 if item == target else 0.0]))
      feature[time_split.ITEM_POPULARITY].CopyFrom(_bytes(
          [time_split.popularity_bucket(train_counts.get(item, 0))]))
      feature[contract.SOURCE_SCORES].CopyFrom(_floats(score))
      feature[contract.SOURCE_RANKS].CopyFrom(_floats(rank))
      feature[RETRIEVAL_POSITION].CopyFrom(tf.train.Feature(
          int64_list=tf.train.Int64List(value=[position])))
      feature[POPULARITY].CopyFrom(_floats([popularity[catalogue[item]]]))
      serialized = example.SerializeToString()
      writers[ALL].write(serialized)
      if user in sample:
        writers[SAMPLE].write(serialized)
  for writer in writers.values():
    writer.close()
  ranking_examples.set_int_custom_property("users", len(users))
  ranking_examples.set_int_custom_property("lists_with_target", found)
  print(f"RankingEvalExamples: {len(users):,} held-out users, {candidates / max(1, len(users)):.0f} "
        f"candidates each; retrieval found the held-out item for {found:,} "
        f"({found / max(1, len(users)):.1%}): those lists are written", flush=True)
