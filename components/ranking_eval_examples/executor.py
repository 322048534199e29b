"""RankingEvalExamples' executor: writes each held-out positive and its sampled
negatives (component.py says how they are drawn)."""
import os
from typing import Any, Dict, List

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils

from recsys_tfx.components.evaluation_data import read_split
from recsys_tfx.schema import canonical
from recsys_tfx.schema import features as feats
from recsys_tfx.schema import time_split
from recsys_tfx.trainer import metrics, ranking_data

SPLIT = "test"


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
                   artifact_utils.get_single_instance(input_dict["schema"]),
                   artifact_utils.get_single_instance(output_dict["ranking_examples"]),
                   data_dir=exec_properties["data_dir"],
                   negatives=int(exec_properties["negatives"]),
                   sampling=exec_properties["sampling"], seed=int(exec_properties["seed"]),
                   max_users=int(exec_properties["max_users"]))


def write_examples(examples, schema, ranking_examples, data_dir: str, negatives: int,
                   sampling: str, seed: int, max_users: int) -> None:
  schema_features = feats.load_features(io_utils.get_only_uri_in_dir(schema.uri))
  items = canonical.read_canonical(data_dir).items
  by_item = item_features(items, schema_features)
  item_ids = items[feats.ITEM_ID].astype(str).tolist()
  index = {item: i for i, item in enumerate(item_ids)}
  train = read_split(examples, "train", {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string})
  seen = train.groupby(feats.USER_ID)[feats.ITEM_ID].agg(lambda s: {index[i] for i in s if i in index})
  train_counts = train[feats.ITEM_ID].value_counts().to_dict()
  probabilities = ranking_data.sampling_probabilities(
      sampling, np.array([train_counts.get(i, 0) for i in item_ids], dtype=np.float64))

  test_users = read_split(examples, SPLIT, {feats.USER_ID: tf.string})[feats.USER_ID].unique()
  kept = None  # every held-out user
  if 0 < max_users < len(test_users):
    kept = set(np.random.default_rng([seed, 1]).choice(test_users, max_users, replace=False))

  rng = np.random.default_rng(seed)
  ranking_examples.split_names = artifact_utils.encode_split_names([SPLIT])
  out_dir = artifact_utils.get_split_uri([ranking_examples], SPLIT)
  tf.io.gfile.makedirs(out_dir)
  source = tf.io.gfile.glob(os.path.join(artifact_utils.get_split_uri([examples], SPLIT), "*"))
  written = 0
  with tf.io.TFRecordWriter(os.path.join(out_dir, "data.tfrecord.gz"),
                            options=tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
    for record in tf.data.TFRecordDataset(source, compression_type="GZIP"):
      positive = tf.train.Example.FromString(record.numpy())
      user = positive.features.feature[feats.USER_ID].bytes_list.value[0].decode()
      if kept is not None and user not in kept:
        continue
      target = positive.features.feature[feats.ITEM_ID].bytes_list.value[0].decode()
      writer.write(positive.SerializeToString())
      excluded = seen.get(user, set()) | ({index[target]} if target in index else set())
      for i in metrics.sampled_negatives(len(item_ids), excluded, rng, negatives, probabilities):
        negative = tf.train.Example()
        negative.CopyFrom(positive)
        feature = negative.features.feature
        for name, value in by_item[item_ids[i]].items():
          feature[name].CopyFrom(value)
        feature[feats.ITEM_ID].CopyFrom(_bytes([item_ids[i]]))
        feature[feats.LABEL].CopyFrom(tf.train.Feature(float_list=tf.train.FloatList(value=[0.0])))
        feature[time_split.ITEM_POPULARITY].CopyFrom(_bytes(
            [time_split.popularity_bucket(train_counts.get(item_ids[i], 0))]))
        writer.write(negative.SerializeToString())
      written += 1
  print(f"RankingEvalExamples: {written} held-out positives of {len(test_users)} users, "
        f"{negatives} negatives each", flush=True)
