"""What the evaluating components share: reading ExampleGen's splits, calling a
SavedModel signature in batches, the held-out rows with each user's seen items, and
recording metrics in an artifact and MLMD. Used by RetrievalEvaluator, RankingEvaluator,
RankingEvalExamples and `recsys compare-rankers`."""
import dataclasses
import json
import os
from typing import Dict, List, Sequence, Set

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact

from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import metrics

BATCH = 256
METRICS_FILE = "metrics.json"


def read_split(examples: Artifact, split: str, columns: Dict[str, tf.DType],
               string_lists: Sequence[str] = ()) -> pd.DataFrame:
  """Reads the named scalar columns of one ExampleGen split into a DataFrame, and each
  of `string_lists` (e.g. history) as a column of lists of bytes."""
  pattern = os.path.join(artifact_utils.get_split_uri([examples], split), "*")
  files = tf.io.gfile.glob(pattern)
  spec = {name: tf.io.FixedLenFeature([], dtype) for name, dtype in columns.items()}
  spec.update({name: tf.io.VarLenFeature(tf.string) for name in string_lists})
  ds = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
      lambda x: tf.io.parse_example(x, spec))
  parts = {name: [] for name in spec}
  for batch in ds:
    for name in columns:
      parts[name].append(batch[name].numpy())
    for name in string_lists:
      parts[name].extend(tf.RaggedTensor.from_sparse(batch[name]).to_list())
  frame = pd.DataFrame({n: np.concatenate(parts[n]) if parts[n] else np.array([])
                        for n in columns})
  for name, dtype in columns.items():
    if dtype == tf.string:
      frame[name] = frame[name].map(lambda b: b.decode())
  for name in string_lists:
    frame[name] = parts[name] if len(frame) else []
  return frame


@dataclasses.dataclass
class HeldOut:
  """The train and eval splits' (user, item) pairs and the test split's rows with their
  context (and history, when the schema has one): what every evaluator reads."""
  train: pd.DataFrame
  eval: pd.DataFrame
  test: pd.DataFrame
  context: List[str]  # the context feature names, columns of `test`

  def before_test(self) -> pd.DataFrame:
    """Every (user, item) interaction before the test split's: what a user has seen when
    the held-out one comes."""
    return pd.concat([self.train, self.eval], ignore_index=True)


def read_held_out(examples: Artifact, schema_file: str) -> HeldOut:
  all_features = feats.load_features(schema_file)
  context = feats.by_role(all_features, "context")
  ids = {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string}
  history = feats.history_feature(all_features)
  train = read_split(examples, "train", ids)
  evaluation = read_split(examples, "eval", ids)
  test = read_split(examples, "test", {**ids, **{f.name: tf.as_dtype(f.dtype) for f in context}},
                    [history.name] if history else [])
  return HeldOut(train, evaluation, test, [f.name for f in context])


def string_matrix(lists: Sequence[Sequence[bytes]]) -> np.ndarray:
  """Lists of strings -> an object [rows, longest] matrix padded with "" (at least 1 wide)."""
  width = max([len(x) for x in lists] + [1])
  out = np.full((len(lists), width), b"", dtype=object)
  for row, values in enumerate(lists):
    out[row, :len(values)] = values
  return out


def call_in_batches(fn, inputs: Dict[str, np.ndarray], key: str, batch: int = BATCH) -> np.ndarray:
  """Calls a signature on row slices of `inputs` and concatenates output `key`."""
  n = len(next(iter(inputs.values())))
  out = []
  for start in range(0, n, batch):
    out.append(fn(**{k: tf.constant(v[start:start + batch]) for k, v in inputs.items()})[key].numpy())
  return np.concatenate(out) if out else np.zeros((0,))


def held_out_frame(test: pd.DataFrame, train: pd.DataFrame, index: Dict[str, int]):
  """Test rows whose item is in the catalogue, each user's training items (as catalogue
  indices) and the held-out item's index."""
  test = test[test[feats.ITEM_ID].isin(index)].reset_index(drop=True)
  seen = train.groupby(feats.USER_ID)[feats.ITEM_ID].agg(lambda s: {index[i] for i in s if i in index})
  seen_sets: List[Set[int]] = [seen.get(u, set()) for u in test[feats.USER_ID]]
  return test, seen_sets, test[feats.ITEM_ID].map(index).to_numpy()


def popularity(train: pd.DataFrame, index: Dict[str, int], seed: int) -> np.ndarray:
  """The popularity baseline's score of each catalogue item (trainer/metrics.py)."""
  counts = np.zeros(len(index))
  known = train[feats.ITEM_ID].map(index).dropna().astype(int).value_counts()
  counts[known.index.to_numpy()] = known.to_numpy()
  return metrics.popularity_scores(counts, seed)


def record_metrics(evaluation: Artifact, values: Dict[str, float], headline, who: str):
  """metrics.json in the artifact; the headline figures as MLMD custom properties and a
  printed line."""
  with tf.io.gfile.GFile(os.path.join(evaluation.uri, METRICS_FILE), "w") as f:
    f.write(json.dumps(values, indent=2, sort_keys=True))
  headline = [key for key in headline if key in values]
  for key in headline:
    evaluation.set_float_custom_property(key, float(values[key]))
  print(f"{who}: " + ", ".join(f"{k}={values[k]:.4f}" for k in headline), flush=True)
