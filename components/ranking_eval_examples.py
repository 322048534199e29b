"""RankingEvalExamples: labelled examples for validating a ranker with TFMA.

For each held-out test interaction it writes the positive (label 1) and `negatives`
items the user never interacted with in training (label 0), sampled from the catalogue
with a fixed seed the way the ranker's training negatives are (`sampling`: uniform,
popularity or mixed — trainer/ranking_data.py), so AUC measures the distinction the
ranker was trained for rather than "popular vs. random". Each negative is the positive example with the item and its
features swapped (user, context and the user's slice features stay). TFMA then computes
AUC and NDCG@K per user (query = user_id) over these groups.

`max_users` (> 0) keeps a seeded sample of that many held-out users. TFMA's per-user
metrics group every example by user in the memory of the Evaluator's in-process Beam job
(about 3 GiB per 10,000 users at 20 negatives), so without a cap RankingValidator's
memory and time grow with the data: ~10 GiB at 1M interactions, ~40 GiB at 5M.
"""
import os
from typing import Dict

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.utils import io_utils

from components import ranking_metrics as rm
from components import time_split_example_gen as example_gen_lib
from components.ingest import dataset as canonical
from components.retrieval_evaluator import read_split
from trainer import features as feats
from trainer import ranking_data

Examples = tfx.types.standard_artifacts.Examples
Schema = tfx.types.standard_artifacts.Schema
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


@tfx.dsl.components.component
def RankingEvalExamples(examples: tfx.dsl.components.InputArtifact[Examples],
                        schema: tfx.dsl.components.InputArtifact[Schema],
                        ranking_examples: tfx.dsl.components.OutputArtifact[Examples],
                        data_dir: tfx.dsl.components.Parameter[str],
                        negatives: tfx.dsl.components.Parameter[int] = 20,
                        sampling: tfx.dsl.components.Parameter[str] = "uniform",
                        seed: tfx.dsl.components.Parameter[int] = 0,
                        max_users: tfx.dsl.components.Parameter[int] = 0):
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
      for i in rm.sampled_negatives(len(item_ids), excluded, rng, negatives, probabilities):
        negative = tf.train.Example()
        negative.CopyFrom(positive)
        feature = negative.features.feature
        for name, value in by_item[item_ids[i]].items():
          feature[name].CopyFrom(value)
        feature[feats.ITEM_ID].CopyFrom(_bytes([item_ids[i]]))
        feature[feats.LABEL].CopyFrom(tf.train.Feature(float_list=tf.train.FloatList(value=[0.0])))
        feature[example_gen_lib.ITEM_POPULARITY].CopyFrom(_bytes(
            [example_gen_lib.popularity_bucket(train_counts.get(item_ids[i], 0))]))
        writer.write(negative.SerializeToString())
      written += 1
  print(f"RankingEvalExamples: {written} held-out positives of {len(test_users)} users, "
        f"{negatives} negatives each", flush=True)
