"""One loaded model version: the restored SavedModel, its callable signatures, and the
SignatureDefs that GetModelMetadata returns.

The SignatureDefs are read from saved_model.pb (the MetaGraphDef tagged "serve", the one
TF Serving loads), so metadata is exactly TF Serving's, `__saved_model_init_op` included.
"""
import dataclasses
import functools
import logging
import sys
from typing import Dict, Mapping

import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2
from tensorflow_serving.apis import prediction_log_pb2

from recsys_tfx.schema.export_contract import MAX_WARMUP_RECORDS, WARMUP_FILE
from recsys_tfx.serving import model_files
from recsys_tfx.serving.signature_runner import run_predict

log = logging.getLogger(__name__)

SERVE_TAG = tf.saved_model.SERVING


@dataclasses.dataclass(frozen=True)
class Servable:
  name: str
  version: int
  path: str
  signature_defs: Mapping[str, meta_graph_pb2.SignatureDef]
  functions: Mapping[str, object]  # signature key -> concrete function
  model: object  # the restored object: keeps the functions' variables and tables alive


@functools.lru_cache(maxsize=None)
def register_scann_ops() -> bool:
  """Imports ScaNN once, so its custom ops ("Scann>...") are registered before any
  SavedModel is loaded. Models without ScaNN ops load either way."""
  try:
    import scann  # noqa: F401
    return True
  except ImportError as e:
    log.warning("ScaNN is not importable (%s); models with ScaNN ops will fail to load", e)
    return False


def read_signature_defs(path: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
  saved_model = saved_model_pb2.SavedModel()
  binary, text = model_files.join(path, "saved_model.pb"), model_files.join(path,
                                                                           "saved_model.pbtxt")
  if model_files.exists(binary):
    saved_model.ParseFromString(model_files.read_bytes(binary))
  elif model_files.exists(text):
    text_format.Parse(model_files.read_text(text), saved_model)
  else:
    raise FileNotFoundError(f"{path} has no saved_model.pb or saved_model.pbtxt")
  for meta_graph in saved_model.meta_graphs:
    if SERVE_TAG in meta_graph.meta_info_def.tags:
      return dict(meta_graph.signature_def)
  raise ValueError(f"{path}: could not find meta graph def matching supplied tags: "
                   f"{{ {SERVE_TAG} }}")


def load_servable(name: str, version: int, path: str) -> Servable:
  """Loads and warms up one version; raises whatever loading raised."""
  signature_defs = read_signature_defs(path)
  register_scann_ops()
  model = tf.saved_model.load(path, tags=[SERVE_TAG])
  servable = Servable(name, version, path, signature_defs, dict(model.signatures), model)
  replayed = warm_up(servable)
  if replayed:
    log.info("%s version %d: replayed %d warm-up request(s)", name, version, replayed)
  return servable


def warm_up(servable: Servable) -> int:
  """Replays the version's warm-up file, as TF Serving does, so the first real request
  does not pay for graph optimisation. Only predict_log records are supported; a failing
  record fails the load (TF Serving's behaviour too)."""
  path = model_files.join(servable.path, WARMUP_FILE)
  if not model_files.exists(path):
    return 0
  count = 0
  for record in tf.data.TFRecordDataset(path).take(MAX_WARMUP_RECORDS):
    entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
    kind = entry.WhichOneof("log_type")
    if kind != "predict_log":
      raise ValueError(f"{path}: record {count}: {kind} warm-up records are not supported "
                       "(only predict_log)")
    run_predict(servable, entry.predict_log.request, max_batch_size=sys.maxsize)
    count += 1
  return count
