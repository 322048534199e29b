"""RetrievalEvaluator: scores the exported retrieval model and a popularity baseline on
the held-out `test` split, with the same protocol for both (components/ranking_metrics.py).

It also measures how well the ScaNN index inside the SavedModel agrees with exact
brute-force search over the same embeddings (recall@10 of ScaNN's top-10); a model
exported with an exact index (the baselines) has no such figure.

Output: a ModelEvaluation artifact holding metrics.json, with the headline figures also
recorded as custom properties so MLMD shows them.
"""
import json
import os
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd
import tensorflow as tf
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact
from tfx.utils import io_utils, path_utils

from components import ranking_metrics as rm
from trainer import export
from trainer import features as feats

Examples = tfx.types.standard_artifacts.Examples
Model = tfx.types.standard_artifacts.Model
Schema = tfx.types.standard_artifacts.Schema
ModelEvaluation = tfx.types.standard_artifacts.ModelEvaluation

BATCH = 256


def read_split(examples: Artifact, split: str, columns: Dict[str, tf.DType],
               string_lists: Sequence[str] = ()) -> pd.DataFrame:
  """Reads the named scalar columns of one ExampleGen split into a DataFrame, and each
  of `string_lists` (e.g. history) as a [rows, longest] string matrix padded with ""."""
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


def string_matrix(lists: Sequence[Sequence[bytes]]) -> np.ndarray:
  """Lists of strings -> an object [rows, longest] matrix padded with "" (at least 1 wide)."""
  width = max([len(x) for x in lists] + [1])
  out = np.full((len(lists), width), b"", dtype=object)
  for row, values in enumerate(lists):
    out[row, :len(values)] = values
  return out


def query_inputs(model, test: pd.DataFrame, context: List[str]):
  """The query signatures to call and their inputs: a model that reads history is asked
  with each held-out example's own history (the items before it), any other by user id.
  Returns (embedding signature, top-k signature, inputs)."""
  inputs = {c: test[c].to_numpy() for c in context}
  if "history_embedding" in model.signatures:
    inputs[feats.HISTORY] = string_matrix(test[feats.HISTORY].tolist())
    return "history_embedding", "recommend_with_history", inputs
  inputs[feats.USER_ID] = test[feats.USER_ID].to_numpy().astype(object)
  return "query_embedding", "recommend_with_context", inputs


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
  seen_sets = [seen.get(u, set()) for u in test[feats.USER_ID]]
  return test, seen_sets, test[feats.ITEM_ID].map(index).to_numpy()


def evaluate(model_dir: str, train: pd.DataFrame, test: pd.DataFrame,
             context: List[str], seed: int = 0) -> Dict[str, float]:
  """Full-catalogue and sampled HR/NDCG for the model and for popularity, plus ScaNN's
  recall where the model has a ScaNN index (not the baselines' exact one)."""
  model = export.load_model(model_dir)
  catalogue = model.signatures["item_embeddings"]()
  item_ids = [b.decode() for b in catalogue["item_ids"].numpy()]
  item_emb = catalogue["embeddings"].numpy()
  index = {item: i for i, item in enumerate(item_ids)}
  has_scann = index_kind(model) == "scann"

  test, seen_sets, target = held_out_frame(test, train, index)

  popularity = np.zeros(len(item_ids))
  counts = train[feats.ITEM_ID].value_counts()
  popularity[[index[i] for i in counts.index if i in index]] = counts[[i for i in counts.index if i in index]]

  embed, top_k, inputs = query_inputs(model, test, context)

  rng = np.random.default_rng(seed)
  model_ranks, pop_ranks, model_sampled, pop_sampled = [], [], [], []
  scann_hits = 0
  # A slice of users at a time: queries and scores for every user at once would not fit
  # in memory at scale (and a baseline's query is as long as the catalogue).
  for start in range(0, len(test), BATCH):
    rows = slice(start, start + BATCH)
    batch_inputs = {k: v[rows] for k, v in inputs.items()}
    model_scores = call_in_batches(model.signatures[embed], batch_inputs, "embedding") @ item_emb.T
    if has_scann:
      scann_hits += scann_hits_at_10(model.signatures[top_k], batch_inputs, model_scores, item_ids)
    pop_scores = np.tile(popularity, (len(model_scores), 1)).astype(np.float64)
    for r in range(len(model_scores)):
      negatives = rm.sampled_negatives(len(item_ids), seen_sets[start + r] | {target[start + r]}, rng)
      model_sampled.append(rm.sampled_rank(model_scores[r], target[start + r], negatives, rng))
      pop_sampled.append(rm.sampled_rank(pop_scores[r], target[start + r], negatives, rng))
    model_ranks.append(rm.rank_of_target(model_scores, target[rows], seen_sets[rows], rng))
    pop_ranks.append(rm.rank_of_target(pop_scores, target[rows], seen_sets[rows], rng))

  metrics = {"users_evaluated": int(len(test)), "catalogue_size": len(item_ids)}
  for name, full, sampled in (("model", model_ranks, model_sampled),
                              ("popularity", pop_ranks, pop_sampled)):
    full = np.concatenate(full) if full else np.zeros(0, np.int64)
    metrics.update({f"{name}/{k}": v for k, v in rm.summarize(full).items()})
    metrics.update({f"{name}/sampled_{k}": v
                    for k, v in rm.summarize(np.asarray(sampled), ks=(10,)).items()})
  if has_scann:
    metrics[SCANN_RECALL] = scann_hits / (10.0 * len(test)) if len(test) else 0.0
  return metrics


def index_kind(model) -> str:
  """"scann" or "brute_force"; models exported before the attribute existed had ScaNN."""
  kind = getattr(model, "index_kind", None)
  return kind.numpy().decode() if kind is not None else "scann"


def scann_hits_at_10(top_k_signature, inputs: Dict[str, np.ndarray], exact_scores: np.ndarray,
                     item_ids: List[str]) -> int:
  """How many of each row's exact (brute-force) top-10 items ScaNN's top-10 also returns,
  summed over the rows; exact_scores [rows, catalogue] are the model's scores."""
  approx = call_in_batches(top_k_signature, inputs, "item_ids")[:, :10]
  exact = top_indices(exact_scores, 10)
  return sum(len({item_ids[i] for i in e} & {a.decode() for a in a_row})
             for e, a_row in zip(exact, approx))


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
  """Column indices of each row's k highest scores (in no particular order)."""
  k = min(k, scores.shape[1])
  return np.argpartition(-scores, k - 1, axis=1)[:, :k]


SCANN_RECALL = "scann_recall@10"
HEADLINE = ("model/hit_rate@10", "model/ndcg@10", "popularity/hit_rate@10",
            "popularity/ndcg@10", SCANN_RECALL)  # the last only where there is ScaNN


@tfx.dsl.components.component
def RetrievalEvaluator(examples: tfx.dsl.components.InputArtifact[Examples],
                       model: tfx.dsl.components.InputArtifact[Model],
                       schema: tfx.dsl.components.InputArtifact[Schema],
                       evaluation: tfx.dsl.components.OutputArtifact[ModelEvaluation],
                       seed: tfx.dsl.components.Parameter[int] = 0):
  schema_file = io_utils.get_only_uri_in_dir(schema.uri)
  all_features = feats.load_features(schema_file)
  dtypes = {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string}
  context = [f.name for f in feats.by_role(all_features, "context")]
  dtypes.update({f.name: tf.as_dtype(f.dtype) for f in feats.by_role(all_features, "context")})
  train = read_split(examples, "train", {feats.USER_ID: tf.string, feats.ITEM_ID: tf.string})
  history = feats.history_feature(all_features)
  test = read_split(examples, "test", dtypes, [history.name] if history else [])
  metrics = evaluate(path_utils.serving_model_path(model.uri), train, test, context, seed)
  record_metrics(evaluation, metrics, HEADLINE, "RetrievalEvaluator")


def record_metrics(evaluation: Artifact, metrics: Dict[str, float], headline, who: str):
  """metrics.json in the artifact; the headline figures as MLMD custom properties and a
  printed line."""
  with tf.io.gfile.GFile(os.path.join(evaluation.uri, "metrics.json"), "w") as f:
    f.write(json.dumps(metrics, indent=2, sort_keys=True))
  headline = [key for key in headline if key in metrics]
  for key in headline:
    evaluation.set_float_custom_property(key, float(metrics[key]))
  print(f"{who}: " + ", ".join(f"{k}={metrics[k]:.4f}" for k in headline), flush=True)
