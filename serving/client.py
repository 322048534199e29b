"""A gRPC client for TF Serving's PredictionService and ModelService.

It uses only tensorflow-serving-api's stubs and standard protos, so it works the same
against serving/model_server.py and a real tensorflow_model_server:

    with PredictionClient("127.0.0.1:8500") as client:
      item_ids, scores = client.retrieve("u0", {"hour": 23, "device": "tv"}, k=100)
      ranked = client.score("u0", item_ids, {"hour": 23, "device": "tv"})

Inputs are encoded with the dtype the signature declares (read once per signature with
GetModelMetadata), so `hour=23` goes out as int64 and `"23"` from a command line works
too. Context features the caller does not give are sent as "unknown" (-1 for integers,
"" for strings), the value the models were trained to handle. Outputs are decoded with
tf.make_ndarray, which reads both the typed value fields (TF Serving's default) and
tensor_content.

Every failed RPC raises RequestFailed naming the call, the target, the gRPC status code
and the server's message; ServerUnavailable when nothing answers at the target.
"""
import dataclasses
import threading
from typing import Dict, List, Mapping, Optional, Sequence, Set, Tuple

import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import json_format, struct_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from recsys_tfx.schema import export_contract as contract
from recsys_tfx.serving import security

DEFAULT_TARGET = "127.0.0.1:8500"
DEFAULT_TIMEOUT = 10.0  # seconds per RPC
# What the exported models promise (schema/export_contract.py).
RETRIEVAL_MODEL, RANKING_MODEL = contract.RETRIEVAL_MODEL, contract.RANKING_MODEL
RETRIEVAL_SIGNATURE = contract.RECOMMEND_WITH_CONTEXT
HISTORY_SIGNATURE = contract.RECOMMEND_WITH_HISTORY  # models that read history
CANDIDATES = {RETRIEVAL_SIGNATURE: contract.CANDIDATES_WITH_CONTEXT,
              HISTORY_SIGNATURE: contract.CANDIDATES_WITH_HISTORY}
RANKING_SIGNATURE = contract.RANKING_SIGNATURE
DEFAULT_SIGNATURE = contract.DEFAULT_SIGNATURE
USER_ID, ITEM_ID, HISTORY = contract.USER_ID, contract.ITEM_ID, contract.HISTORY
UNKNOWN_INT, UNKNOWN_STRING = contract.UNKNOWN_INT, contract.UNKNOWN_STRING

# Never unlimited (-1): answers up to the server's largest (item_embeddings of a 1M-item
# catalogue is ~260 MB), requests up to 64 MiB (a server refuses above its own limit,
# 1 MiB by default, with RESOURCE_EXHAUSTED).
_GRPC_OPTIONS = [("grpc.max_receive_message_length", 512 << 20),
                 ("grpc.max_send_message_length", 64 << 20)]
_INTEGER = (types_pb2.DT_INT64, types_pb2.DT_INT32, types_pb2.DT_INT16, types_pb2.DT_INT8,
            types_pb2.DT_UINT8, types_pb2.DT_UINT16, types_pb2.DT_UINT32, types_pb2.DT_UINT64)
_FLOAT = (types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF)
_STATE_NAMES = get_model_status_pb2.ModelVersionStatus.State.Name


class RequestFailed(Exception):
  """An RPC that did not return OK: `code` is the grpc.StatusCode, `details` the server's
  message."""

  def __init__(self, what: str, target: str, code: grpc.StatusCode, details: str):
    self.what, self.target, self.code, self.details = what, target, code, details
    super().__init__(self.describe())

  def describe(self) -> str:
    return f"{self.what} at {self.target} failed: {self.code.name}: {self.details}"


class ServerUnavailable(RequestFailed):
  """Nothing answers at the target (not started, wrong port, or gone)."""

  def describe(self) -> str:
    return f"no model server answers at {self.target} ({self.code.name}: {self.details})"


# --- tensors -------------------------------------------------------------------------------

def encode(values, dtype: int) -> tensor_pb2.TensorProto:
  """values (a scalar, list or array) -> TensorProto of `dtype` (a types_pb2 enum). Numbers
  are cast to the signature's dtype first (int64 as np.int64: a bare Python int would
  otherwise go out as int32, which the server rejects)."""
  if dtype == types_pb2.DT_STRING:
    array = np.asarray(values, dtype=object)
    flat = [v if isinstance(v, bytes) else str(v).encode() for v in array.ravel()]
    shape = tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=n) for n in array.shape])
    return tensor_pb2.TensorProto(dtype=dtype, tensor_shape=shape, string_val=flat)
  np_dtype = tf.dtypes.as_dtype(dtype).as_numpy_dtype
  try:
    array = np.asarray(values).astype(np_dtype, casting="unsafe" if dtype in _FLOAT
                                      else "same_kind")
  except (TypeError, ValueError):
    array = _parse_numbers(values, np_dtype)
  return tf.make_tensor_proto(array, dtype=dtype)


def _parse_numbers(values, np_dtype) -> np.ndarray:
  """Numbers given as text ("23" from a command line) -> an array of np_dtype."""
  array = np.asarray(values, dtype=object)
  parse = int if np.issubdtype(np_dtype, np.integer) else float
  out = np.empty(array.shape, np_dtype)
  for index, value in np.ndenumerate(array):
    try:
      out[index] = parse(str(value).strip())
    except ValueError:
      kind = "an integer" if parse is int else "a number"
      raise ValueError(f"expected {kind}, got {value!r}") from None
  return out


def decode(proto: tensor_pb2.TensorProto) -> np.ndarray:
  """TensorProto -> ndarray, from typed fields or tensor_content (strings stay bytes)."""
  return tf.make_ndarray(proto)


def unknown_value(dtype: int):
  if dtype == types_pb2.DT_STRING:
    return UNKNOWN_STRING
  return UNKNOWN_INT if dtype in _INTEGER else 0.0


def _text(values) -> List[str]:
  return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


# --- the client ----------------------------------------------------------------------------
@dataclasses.dataclass
class Candidates:
  """One user's candidates from the retrieval model, in the retrieval order."""
  item_ids: List[str]
  scores: np.ndarray  # [c] the primary source's
  source_scores: Optional[np.ndarray]  # [c, sources]
  source_ranks: Optional[np.ndarray]  # [c, sources]; 1-based, 0 = not retrieved by it



class PredictionClient:
  """One channel to one server; safe to share between threads."""

  def __init__(self, target: str = DEFAULT_TARGET, timeout: float = DEFAULT_TIMEOUT,
               retrieval_model: str = RETRIEVAL_MODEL, ranking_model: str = RANKING_MODEL,
               retrieval_signature: str = RETRIEVAL_SIGNATURE,
               ranking_signature: str = RANKING_SIGNATURE, ca_cert: Optional[str] = None,
               client_cert: Optional[str] = None, client_key: Optional[str] = None,
               token_file: Optional[str] = None):
    """TLS when ca_cert (the PEM file of the CA that signed the server's certificate) is
    given, mutual TLS with client_cert and client_key too; token_file: a bearer token
    sent with every call (serving/security.py)."""
    self.target = target
    self.timeout = timeout
    self.retrieval_model, self.retrieval_signature = retrieval_model, retrieval_signature
    self.ranking_model, self.ranking_signature = ranking_model, ranking_signature
    self._channel = security.client_channel(target, _GRPC_OPTIONS, ca_cert, client_cert,
                                            client_key, token_file)
    self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
    self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
    self._inputs_cache: Dict[Tuple[str, str], Dict[str, int]] = {}
    self._names_cache: Dict[str, Set[str]] = {}
    self._lock = threading.Lock()

  def close(self) -> None:
    self._channel.close()

  def __enter__(self) -> "PredictionClient":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def _call(self, what: str, method, request):
    try:
      return method(request, timeout=self.timeout)
    except grpc.RpcError as e:
      code, details = e.code(), e.details() or ""
      if code == grpc.StatusCode.UNAVAILABLE:
        raise ServerUnavailable(what, self.target, code, details) from None
      if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        details = f"no answer within {self.timeout:g}s ({details})"
      raise RequestFailed(what, self.target, code, details) from None

  # --- model status and metadata ---------------------------------------------------------

  def model_status(self, model: str, version: Optional[int] = None) -> List[dict]:
    """[{version, state ("AVAILABLE", "LOADING", "END", ...), error_code, error_message}],
    newest version first."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model
    if version is not None:
      request.model_spec.version.value = version
    response = self._call(f"GetModelStatus({model})", self._models.GetModelStatus, request)
    return [{"version": s.version, "state": _STATE_NAMES(s.state),
             "error_code": s.status.error_code, "error_message": s.status.error_message}
            for s in response.model_version_status]

  def available_version(self, model: str) -> Optional[int]:
    """The newest AVAILABLE version of `model`, or None (also when the model is unknown)."""
    try:
      statuses = self.model_status(model)
    except RequestFailed as e:
      if e.code == grpc.StatusCode.NOT_FOUND:
        return None
      raise
    versions = [s["version"] for s in statuses if s["state"] == "AVAILABLE"]
    return max(versions) if versions else None

  def model_metadata(self, model: str, version: Optional[int] = None):
    """The model's SignatureDefs: {signature name: tensorflow SignatureDef proto}."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    if version is not None:
      request.model_spec.version.value = version
    request.metadata_field.append("signature_def")
    response = self._call(f"GetModelMetadata({model})", self._predictions.GetModelMetadata,
                          request)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    return dict(signatures.signature_def)

  def composition(self, model: str) -> Dict[str, object]:
    """What a served recommender composes (GetModelMetadata's "composition" field, which
    this project's server adds; TF Serving refuses it)."""
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = model
    request.metadata_field.append("composition")
    response = self._call(f"GetModelMetadata({model})", self._predictions.GetModelMetadata,
                          request)
    found = struct_pb2.Struct()
    response.metadata["composition"].Unpack(found)
    # A Struct's numbers are doubles; versions are integers (exact below 2**53).
    return {name: int(value) if isinstance(value, float) and value.is_integer() else value
            for name, value in json_format.MessageToDict(found).items()}

  def signature_inputs(self, model: str, signature: str) -> Dict[str, int]:
    """{input name: dtype (types_pb2 enum)} of one signature. Cached for the client's
    life: recreate a long-lived client when a new model version changes its inputs."""
    key = (model, signature)
    with self._lock:
      cached = self._inputs_cache.get(key)
    if cached is None:
      signatures = self.model_metadata(model)
      if signature not in signatures:
        known = ", ".join(sorted(s for s in signatures if not s.startswith("__")))
        raise RequestFailed(f"GetModelMetadata({model})", self.target,
                            grpc.StatusCode.NOT_FOUND,
                            f"model {model} has no signature {signature!r} (it has: {known})")
      cached = {name: info.dtype for name, info in signatures[signature].inputs.items()}
      with self._lock:
        self._inputs_cache[key] = cached
    return cached

  # --- prediction ------------------------------------------------------------------------

  def predict(self, model: str, inputs: Mapping[str, object], signature: str = "",
              version: Optional[int] = None,
              output_filter: Sequence[str] = ()) -> Dict[str, np.ndarray]:
    """One Predict. `inputs` are TensorProtos or values; values are encoded with the
    signature's dtypes (one GetModelMetadata per signature, cached)."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    request.model_spec.signature_name = signature
    if version is not None:
      request.model_spec.version.value = version
    key = signature or DEFAULT_SIGNATURE
    dtypes = None
    for name, value in inputs.items():
      if not isinstance(value, tensor_pb2.TensorProto):
        dtypes = dtypes or self.signature_inputs(model, key)
        if name not in dtypes:
          raise ValueError(f"{model}/{key} has no input {name!r} "
                           f"(inputs: {', '.join(sorted(dtypes))})")
        value = encode(value, dtypes[name])
      request.inputs[name].CopyFrom(value)
    request.output_filter.extend(output_filter)
    what = f"Predict({model}/{key})"
    response = self._call(what, self._predictions.Predict, request)
    return {name: decode(proto) for name, proto in response.outputs.items()}

  def context_features(self, model: str, signature: str) -> Set[str]:
    """A signature's inputs other than the ids: the context it takes (e.g. hour, device)."""
    return set(self.signature_inputs(model, signature)) - set(contract.ID_INPUTS) - {
        contract.SOURCE_SCORES, contract.SOURCE_RANKS} - set(contract.RECOMMENDER_KNOBS)

  def check_context(self, context: Optional[Mapping[str, object]],
                    ranking: bool = True) -> None:
    """ValueError naming the context features neither the retrieval nor (with `ranking`)
    the ranking signature takes: a typo, or a feature this dataset does not have."""
    accepted = self.context_features(self.retrieval_model, self.retrieval_signature)
    if ranking:
      accepted |= self.context_features(self.ranking_model, self.ranking_signature)
    unexpected = sorted(set(context or {}) - accepted)
    if unexpected:
      raise ValueError(f"context feature(s) {unexpected} are not inputs of the models "
                       f"(their context features: {', '.join(sorted(accepted)) or 'none'})")

  def request_inputs(self, model: str, signature: str, rows: int,
                      given: Mapping[str, object], context: Optional[Mapping[str, object]],
                      strict: bool) -> Dict[str, object]:
    """The signature's inputs for `rows` rows: `given` columns as they are, each context
    value repeated per row, and "unknown" for context the caller did not give. Context
    the signature does not take is an error if `strict`, else left out."""
    dtypes = self.signature_inputs(model, signature)
    context = dict(context or {})
    unexpected = sorted(set(context) - set(dtypes))
    if unexpected and strict:
      features = sorted(self.context_features(model, signature))
      raise ValueError(f"context feature(s) {unexpected} are not inputs of {model}/{signature} "
                       f"(its context features: {', '.join(features) or 'none'})")
    inputs = {}
    for name, dtype in dtypes.items():
      if name in given:
        values = given[name]
      else:
        value = context.get(name, unknown_value(dtype))
        try:
          values = encode([value] * rows, dtype)
        except ValueError as e:
          raise ValueError(f"context {name}={value!r}: {e}") from None
      inputs[name] = values
    return inputs

  def has_signature(self, model: str, signature: str) -> bool:
    return signature in self._signature_names(model)

  def _signature_names(self, model: str) -> Set[str]:
    with self._lock:
      names = self._names_cache.get(model)
    if names is None:
      names = set(self.model_metadata(model))
      with self._lock:
        self._names_cache[model] = names
    return names

  def sources(self, model: str) -> Optional[List[str]]:
    """The candidate sources a model was exported with (its candidate_sources
    signature), or None for a model without one."""
    if not self.has_signature(model, contract.CANDIDATE_SOURCES):
      return None
    return _text(self.predict(model, {}, contract.CANDIDATE_SOURCES)[contract.SOURCES])

  def retrieve(self, user_id: str, context: Optional[Mapping[str, object]] = None,
               k: Optional[int] = None, strict: bool = True,
               history: Optional[Sequence[str]] = None) -> Tuple[List[str], np.ndarray]:
    """Top candidates for one user from the retrieval model's primary source:
    (item_ids, scores), best first. The model returns its own top_k; with k, at most the
    first k of them. With `history` (item ids, oldest first) a model that reads history
    answers from it instead of the user's stored history (HISTORY_SIGNATURE)."""
    signature, given = self._query(user_id, history, self.retrieval_signature)
    inputs = self.request_inputs(self.retrieval_model, signature, 1, given, context, strict)
    out = self.predict(self.retrieval_model, inputs, signature)
    ids, scores = out["item_ids"][0], out["scores"][0]
    if k is not None:
      ids, scores = ids[:k], scores[:k]
    return _text(ids), np.asarray(scores, np.float32)

  def _query(self, user_id: str, history: Optional[Sequence[str]], by_user: str):
    """(signature, id inputs): by history when one is given and the model reads one,
    else by user id (the history then only tells the funnel what was seen)."""
    history_signature = HISTORY_SIGNATURE if by_user == self.retrieval_signature else \
        CANDIDATES[HISTORY_SIGNATURE]
    if history is not None and self.has_signature(self.retrieval_model, history_signature):
      return history_signature, {HISTORY: [list(history) or [""]]}
    return by_user, {USER_ID: [user_id]}

  def candidates(self, user_id: str, context: Optional[Mapping[str, object]] = None,
                 strict: bool = True, history: Optional[Sequence[str]] = None) -> Candidates:
    """The retrieval model's candidates for one user: the union of its sources' top-K in
    the retrieval order, with each source's score and rank. A model exported without
    sources answers with its top-K alone (source_scores and source_ranks None)."""
    by_user = CANDIDATES[self.retrieval_signature]
    if not self.has_signature(self.retrieval_model, by_user):
      ids, scores = self.retrieve(user_id, context, strict=strict, history=history)
      return Candidates(ids, scores, None, None)
    signature, given = self._query(user_id, history, by_user)
    inputs = self.request_inputs(self.retrieval_model, signature, 1, given, context, strict)
    out = self.predict(self.retrieval_model, inputs, signature)
    return Candidates(_text(out[contract.ITEM_IDS][0]),
                      np.asarray(out[contract.SCORES][0], np.float32),
                      np.asarray(out[contract.SOURCE_SCORES][0], np.float32),
                      np.asarray(out[contract.SOURCE_RANKS][0], np.float32))

  def score(self, user_id: str, item_ids: Sequence[str],
            context: Optional[Mapping[str, object]] = None, strict: bool = True,
            source_scores=None, source_ranks=None) -> np.ndarray:
    """Ranking scores of (user, item) pairs, one per item, in one batched Predict; a
    ranker that reads the candidate sources gets their scores and ranks per item."""
    if len(item_ids) == 0:
      return np.zeros([0], np.float32)
    rows = len(item_ids)
    given = {USER_ID: [user_id] * rows, ITEM_ID: list(item_ids)}
    if contract.SOURCE_SCORES in self.signature_inputs(self.ranking_model,
                                                       self.ranking_signature):
      if source_scores is None:
        raise ValueError(f"{self.ranking_model} re-orders retrieval candidates and needs "
                         "their source scores and ranks (from the candidates_* signatures)")
      given[contract.SOURCE_SCORES] = np.asarray(source_scores, np.float32)
      given[contract.SOURCE_RANKS] = np.asarray(source_ranks, np.float32)
    inputs = self.request_inputs(self.ranking_model, self.ranking_signature, rows, given,
                                  context, strict)
    out = self.predict(self.ranking_model, inputs, self.ranking_signature,
                       output_filter=["scores"])
    return np.asarray(out["scores"], np.float32).reshape([rows])

