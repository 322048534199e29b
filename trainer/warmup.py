"""Warm-up requests written into a SavedModel, in TF Serving's own format:

  <saved_model_dir>/assets.extra/tf_serving_warmup_requests
      a TFRecord file of tensorflow_serving.apis.prediction_log_pb2.PredictionLog records,
      each with predict_log.request set

TF Serving (and serving/model_server.py) replays them when it loads a version, before the
version answers its first request, so that request does not pay for graph set-up. The
file's place and limit are part of the export contract (schema/export_contract.py). The
export code calls, for example:

    warmup.write_warmup_requests(path, "retrieval", "recommend_with_context",
                                 warmup.retrieval_warmup_inputs(["u0", "u1"],
                                                                {"hour": [8, 21]}))
"""
import os
from typing import Dict, List, Mapping, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.python.saved_model import loader_impl
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema.export_contract import MAX_WARMUP_RECORDS, WARMUP_FILE

UNKNOWN_USER = "__warmup_unknown_user__"  # an id no real user has: the cold-start path


def _request(model_name: str, signature_name: str, inputs: Mapping[str, object],
             dtypes: Mapping[str, int], where: str) -> predict_pb2.PredictRequest:
  missing, extra = set(dtypes) - set(inputs), set(inputs) - set(dtypes)
  if missing or extra:
    raise ValueError(f"{where}: inputs {sorted(inputs)} do not match the signature's "
                     f"{sorted(dtypes)} (missing {sorted(missing)}, unexpected {sorted(extra)})")
  request = predict_pb2.PredictRequest()
  request.model_spec.name = model_name
  request.model_spec.signature_name = signature_name
  for name, values in inputs.items():
    request.inputs[name].CopyFrom(_tensor(values, dtypes[name]))
  return request


def _tensor(values, dtype: int) -> tensor_pb2.TensorProto:
  """values -> a TensorProto of the signature's dtype (a types_pb2 enum)."""
  if dtype == types_pb2.DT_STRING:
    values = [v if isinstance(v, bytes) else str(v).encode() for v in values]
    return tf.make_tensor_proto(np.asarray(values, dtype=object), dtype=dtype)
  return tf.make_tensor_proto(np.asarray(values).astype(tf.as_dtype(dtype).as_numpy_dtype),
                              dtype=dtype)


def signature_defs(saved_model_dir: str):
  """The SignatureDefs of the MetaGraph tagged "serve" (the one TF Serving loads)."""
  saved_model = loader_impl.parse_saved_model(saved_model_dir)
  for meta_graph in saved_model.meta_graphs:
    if tf.saved_model.SERVING in meta_graph.meta_info_def.tags:
      return dict(meta_graph.signature_def)
  raise ValueError(f"{saved_model_dir} has no MetaGraph tagged 'serve'")


def write_warmup_requests(saved_model_dir: str, model_name: str, signature_name: str,
                          inputs_list: Sequence[Mapping[str, object]]) -> str:
  """One PredictRequest per entry of inputs_list ({input name: values}, every input of
  the signature), encoded with the signature's dtypes. Replaces an existing file
  atomically; returns its path. Raises ValueError on inputs that do not fit."""
  signature = signature_defs(saved_model_dir).get(signature_name)
  if signature is None:
    raise ValueError(f"{saved_model_dir} has no signature {signature_name!r}")
  if not 0 < len(inputs_list) <= MAX_WARMUP_RECORDS:
    raise ValueError(f"between 1 and {MAX_WARMUP_RECORDS} warm-up requests (TF Serving's "
                     f"limit), got {len(inputs_list)}")
  dtypes = {name: info.dtype for name, info in signature.inputs.items()}
  records = []
  for i, inputs in enumerate(inputs_list):
    log = prediction_log_pb2.PredictionLog()
    log.predict_log.request.CopyFrom(
        _request(model_name, signature_name, inputs, dtypes, f"warm-up request {i}"))
    records.append(log.SerializeToString())
  path = os.path.join(saved_model_dir, WARMUP_FILE)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with tf.io.TFRecordWriter(path + ".tmp") as writer:
    for record in records:
      writer.write(record)
  os.replace(path + ".tmp", path)
  return path


def read_warmup_requests(saved_model_dir: str) -> List[prediction_log_pb2.PredictionLog]:
  path = os.path.join(saved_model_dir, WARMUP_FILE)
  return [prediction_log_pb2.PredictionLog.FromString(r.numpy())
          for r in tf.data.TFRecordDataset(path)]


def context_examples(interactions, names: Sequence[str], per_feature: int = 2
                     ) -> Dict[str, list]:
  """The most frequent known values of each context column of an interactions table
  (canonical: e.g. hour, device), as plain Python values: {"hour": [21, 20], ...}."""
  out = {}
  for name in names:
    if name not in interactions:
      raise ValueError(f"context feature {name!r} is not a column of the interactions table "
                       f"(columns: {', '.join(map(str, interactions.columns))})")
    column = interactions[name]
    known = column[(column != contract.UNKNOWN_INT) & (column != contract.UNKNOWN_STRING)]
    values = known.value_counts().index[:per_feature].tolist() or [column.iloc[0]]
    out[name] = [v.item() if hasattr(v, "item") else v for v in values]
  return out


def _unknown_like(value):
  return contract.UNKNOWN_STRING if isinstance(value, (str, bytes)) else contract.UNKNOWN_INT


def _context_rows(context: Mapping[str, Sequence], rows: int, variant: int) -> Dict[str, list]:
  """Context columns for `rows` rows: variant 0 all unknown; otherwise cycling through
  each feature's example values."""
  out = {}
  for name, examples in context.items():
    if not examples:
      raise ValueError(f"context {name!r}: give at least one example value")
    if variant == 0:
      out[name] = [_unknown_like(examples[0])] * rows
    else:
      out[name] = [examples[(variant + r) % len(examples)] for r in range(rows)]
  return out


def retrieval_warmup_inputs(user_ids: Sequence[str],
                            context: Mapping[str, Sequence] = (),
                            batch_size: int = 8) -> List[Dict[str, list]]:
  """Requests like the funnel's, for recommend_with_context (or serving_default with no
  context): one known user with unknown context, one with context, an unknown user, and
  a batch of users. `context` maps each context input to example values, e.g.
  {"hour": [8, 21], "device": ["tv", "mobile"]}; unknown values (-1, "") are added."""
  if not user_ids:
    raise ValueError("give at least one user id")
  context = dict(context)
  batch = [user_ids[i % len(user_ids)] for i in range(batch_size)]
  return [
      {contract.USER_ID: [user_ids[0]], **_context_rows(context, 1, 0)},
      {contract.USER_ID: [user_ids[0]], **_context_rows(context, 1, 1)},
      {contract.USER_ID: [UNKNOWN_USER], **_context_rows(context, 1, 0)},
      {contract.USER_ID: batch, **_context_rows(context, batch_size, 1)},
  ]


def ranking_warmup_inputs(user_ids: Sequence[str], item_ids: Sequence[str],
                          context: Mapping[str, Sequence] = (), sources: int = 1,
                          candidates: Sequence[int] = (1, 100)) -> List[Dict[str, list]]:
  """Requests like the funnel's for the ranker's serving_default: one user against
  `candidates` items per request (one row per pair, with `sources` scores and ranks:
  retrieved by every source at its row's rank), known and unknown users, with and
  without context."""
  if not user_ids or not item_ids:
    raise ValueError("give at least one user id and one item id")
  context = dict(context)
  requests = []
  for i, rows in enumerate(candidates):
    user = UNKNOWN_USER if i % 2 else user_ids[i % len(user_ids)]
    items = [item_ids[r % len(item_ids)] for r in range(rows)]
    requests.append({contract.USER_ID: [user] * rows, contract.ITEM_ID: items,
                     contract.SOURCE_SCORES: [[1.0 - r / rows] * sources for r in range(rows)],
                     contract.SOURCE_RANKS: [[float(r + 1)] * sources for r in range(rows)],
                     **_context_rows(context, rows, i % 2)})
  return requests
