"""TF Serving's REST JSON for Predict, both ways: a request body to a PredictRequest, and a
PredictResponse to the response body
(https://www.tensorflow.org/tfx/serving/api_rest#predict_api).

  {"signature_name": "...", "instances": [...]}   row format: one entry per example, an
                                                  object of named inputs, or the bare
                                                  value when the signature has one input
  {"signature_name": "...", "inputs": ...}        columnar: an object of named inputs
                                                  (whole batches), or the bare value
                                                  when the signature has one input

A row-format request is answered {"predictions": [...]} (one entry per example; the bare
value when there is one output), a columnar one {"outputs": ...} (an object of named
outputs, or the bare value when there is one). Strings travel as UTF-8 text; binary
values as {"b64": "<base64>"}, which outputs whose alias ends in "_bytes" are sent as
(TF Serving's convention), others are decoded as UTF-8.

The JSON becomes the same TensorProtos a gRPC client sends, so every check the gRPC
Predict makes applies unchanged, and the answers are equal.
"""
import base64
import binascii
import json
from typing import Dict, List

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2

from recsys_tfx.serving import errors
from recsys_tfx.serving.signature_runner import DEFAULT_SIGNATURE

ROW, COLUMNAR = "instances", "inputs"
_FLOATS = {types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_HALF, types_pb2.DT_BFLOAT16}
_INTS = {types_pb2.DT_INT8, types_pb2.DT_INT16, types_pb2.DT_INT32, types_pb2.DT_INT64,
         types_pb2.DT_UINT8, types_pb2.DT_UINT16, types_pb2.DT_UINT32, types_pb2.DT_UINT64}


def parse_body(body: bytes) -> dict:
  try:
    value = json.loads(body)
  except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
    raise errors.invalid_argument(f"the request body is not valid JSON: {e}") from None
  if not isinstance(value, dict):
    raise errors.invalid_argument("the request body must be a JSON object with "
                                  "'instances' or 'inputs'")
  return value


def signature_name(body: dict) -> str:
  name = body.get("signature_name", "")
  if not isinstance(name, str):
    raise errors.invalid_argument("'signature_name' must be a string")
  return name or DEFAULT_SIGNATURE


def fill_request(request: predict_pb2.PredictRequest, body: dict, signature) -> str:
  """Sets the request's signature_name and inputs from a parsed body; returns its format
  (ROW or COLUMNAR). `signature` is the SignatureDef the body names: its input dtypes
  decide how JSON values are read."""
  unknown = set(body) - {"signature_name", ROW, COLUMNAR}
  if unknown:
    raise errors.invalid_argument(f"unknown key(s) in the request: {sorted(unknown)} "
                                  "(expected 'signature_name' and 'instances' or 'inputs')")
  if (ROW in body) == (COLUMNAR in body):
    raise errors.invalid_argument("the request must have exactly one of 'instances' (row "
                                  "format) and 'inputs' (columnar format)")
  form = ROW if ROW in body else COLUMNAR
  columns = _row_columns(body[ROW], signature) if form == ROW else _columns(
      body[COLUMNAR], signature)
  request.model_spec.signature_name = signature_name(body)
  for alias, value in columns.items():
    if alias not in signature.inputs:
      raise errors.invalid_argument(
          f"input tensor alias not found in signature: {alias}. Inputs expected to be in "
          "the set {" + ",".join(sorted(signature.inputs)) + "}.")
    request.inputs[alias].CopyFrom(_tensor_proto(alias, value, signature.inputs[alias].dtype))
  return form


def _is_b64(value) -> bool:
  return isinstance(value, dict) and set(value) == {"b64"}


def _only_input(signature) -> str:
  if len(signature.inputs) != 1:
    raise errors.invalid_argument(
        "the signature has several inputs (" + ", ".join(sorted(signature.inputs)) +
        "): name them in an object")
  return next(iter(signature.inputs))


def _row_columns(instances, signature) -> Dict[str, list]:
  if not isinstance(instances, list) or not instances:
    raise errors.invalid_argument("'instances' must be a non-empty list")
  if not all(isinstance(i, dict) and not _is_b64(i) for i in instances):
    if any(isinstance(i, dict) and not _is_b64(i) for i in instances):
      raise errors.invalid_argument("'instances' mixes named-input objects and bare values")
    return {_only_input(signature): instances}
  names = set(instances[0])
  for n, instance in enumerate(instances):
    if set(instance) != names:
      raise errors.invalid_argument(
          f"instance {n} has inputs {sorted(instance)}, instance 0 has {sorted(names)}: "
          "every instance must name the same inputs")
  return {name: [instance[name] for instance in instances] for name in names}


def _columns(inputs, signature) -> Dict[str, object]:
  if isinstance(inputs, dict) and not _is_b64(inputs):
    return inputs
  return {_only_input(signature): inputs}


def _shape_and_leaves(alias: str, value, leaves: list, depth: int = 0) -> List[int]:
  """Appends value's scalars to leaves; returns its shape (lists must be rectangular)."""
  if not isinstance(value, list):
    leaves.append(value)
    return []
  if not value:
    return [0]
  inner = None
  for item in value:
    item_shape = _shape_and_leaves(alias, item, leaves, depth + 1)
    if inner is None:
      inner = item_shape
    elif item_shape != inner:
      raise errors.invalid_argument(
          f"input '{alias}': lists of different lengths at depth {depth + 1} "
          f"({inner} and {item_shape}); a tensor must be rectangular")
  return [len(value)] + inner


def _leaf(alias: str, value, dtype: int):
  if dtype == types_pb2.DT_STRING:
    if isinstance(value, str):
      return value.encode("utf-8")
    if _is_b64(value) and isinstance(value["b64"], str):
      try:
        return base64.b64decode(value["b64"], validate=True)
      except binascii.Error:
        raise errors.invalid_argument(f"input '{alias}': {value['b64'][:20]!r} is not "
                                      "valid base64") from None
    kind = "a string or {\"b64\": ...}"
  elif dtype in _FLOATS:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      return value
    kind = "a number"
  elif dtype in _INTS:
    if isinstance(value, int) and not isinstance(value, bool):
      return value
    kind = "an integer"
  elif dtype == types_pb2.DT_BOOL:
    if isinstance(value, bool):
      return value
    kind = "true or false"
  else:
    raise errors.invalid_argument(f"input '{alias}': dtype {types_pb2.DataType.Name(dtype)} "
                                  "cannot be sent as JSON here")
  raise errors.invalid_argument(f"input '{alias}' expects {kind} "
                                f"({types_pb2.DataType.Name(dtype)}), got {value!r:.40}")


def _tensor_proto(alias: str, value, dtype: int):
  leaves: list = []
  shape = _shape_and_leaves(alias, value, leaves)
  values = [_leaf(alias, leaf, dtype) for leaf in leaves]
  tf_dtype = tf.as_dtype(dtype)
  try:
    array = np.array(values, dtype=object if dtype == types_pb2.DT_STRING
                     else tf_dtype.as_numpy_dtype).reshape(shape)
  except (OverflowError, ValueError) as e:
    raise errors.invalid_argument(f"input '{alias}': {e}") from None
  return tf.make_tensor_proto(array, dtype=tf_dtype, shape=shape)


# --- responses -----------------------------------------------------------------------------

def _json_value(alias: str, array: np.ndarray):
  if array.dtype == object:  # strings
    if alias.endswith("_bytes"):
      convert = lambda b: {"b64": base64.b64encode(b).decode("ascii")}  # noqa: E731
    else:
      convert = lambda b: b.decode("utf-8", errors="replace")  # noqa: E731
    return np.vectorize(convert, otypes=[object])(array).tolist() if array.size else \
        array.tolist()
  if array.dtype in (np.float32, np.float16) and array.size:
    # The shortest text that reads back as the same float32 (122.99, as TF Serving writes
    # it, not 122.98999786376953): tolist() would widen to float64 first.
    shortest = np.array([float(str(v)) for v in array.ravel()], dtype=object)
    return shortest.reshape(array.shape).tolist()
  return array.tolist()


def response_body(response: predict_pb2.PredictResponse, form: str) -> dict:
  arrays = {alias: tf.make_ndarray(proto) for alias, proto in response.outputs.items()}
  if form == COLUMNAR:
    values = {alias: _json_value(alias, array) for alias, array in arrays.items()}
    return {"outputs": next(iter(values.values())) if len(values) == 1 else values}
  sizes = {alias: (array.shape[0] if array.ndim else None) for alias, array in arrays.items()}
  if None in sizes.values() or len(set(sizes.values())) > 1:
    raise errors.invalid_argument(
        f"the outputs do not share a batch size ({sizes}), so they cannot be answered in "
        "row format: send 'inputs' (columnar format) instead")
  values = {alias: _json_value(alias, array) for alias, array in arrays.items()}
  if len(values) == 1:
    return {"predictions": next(iter(values.values()))}
  rows = next(iter(sizes.values()))
  return {"predictions": [{alias: value[n] for alias, value in values.items()}
                          for n in range(rows)]}
