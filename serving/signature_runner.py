"""Runs one PredictRequest against one loaded model version.

The checks and their order follow TF Serving's predict_util.cc: signature lookup, input
names, output filter, then the signature's function. TF Serving leaves dtype and shape
errors to the TensorFlow session ("Expects arg[0] to be string but float is provided");
here they are checked up front so the message names the input, with the same status
(INVALID_ARGUMENT).

Sizes are checked on the request proto before any tensor is built: a TensorProto
declares its shape separately from the values it carries, and building it fills the
declared shape (a 41-byte request declaring [100000000] with one string value becomes
10^8 strings, gigabytes, before any batch limit could be checked). So every input's
declared dimensions must be non-negative, its batch (first dimension, where the
signature leaves it open) at most max_batch_size, its element count at most
max_batch_size * MAX_VALUES_PER_ROW, and the values it carries must be exactly as many
as it declares (or one value repeated over at most max_batch_size elements, the form
tf.make_tensor_proto(scalar, shape=[n]) writes).
"""
import dataclasses
from typing import Dict, List, Optional, Tuple

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from recsys_tfx.serving import errors

DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
# Values one row of an input may hold (e.g. a history window: trainer.history_length
# items, 50 by default), so one input holds at most max_batch_size * this many.
MAX_VALUES_PER_ROW = 1024
# TF Serving's default response encoding (Tensor::AsProtoField) puts values in the typed
# repeated field, not tensor_content, and clients often read e.g. `.float_val` directly.
_VALUE_FIELDS = {
    tf.float32: "float_val", tf.float64: "double_val", tf.int64: "int64_val",
    tf.int32: "int_val", tf.int16: "int_val", tf.int8: "int_val", tf.uint16: "int_val",
    tf.uint8: "int_val", tf.uint32: "uint32_val", tf.uint64: "uint64_val", tf.bool: "bool_val",
}


@dataclasses.dataclass(frozen=True)
class PreparedPredict:
  """A PredictRequest that passed every check, its input tensors built: what the model is
  called with (alone, or merged with others by serving/batching.py) and what the
  response needs."""
  servable: object  # serving.servable.Servable
  model_name: str  # as the request spelled it, echoed in the response
  signature_name: str
  function: object
  inputs: Dict[str, tf.Tensor]
  output_aliases: List[str]
  # The rows (dim 0) every input shares when the signature batches (every input and
  # output has an open dim 0), else None: such a request is only ever run alone.
  rows: Optional[int]

  def batch_key(self) -> Tuple:
    """Requests with equal keys may be merged: same loaded version (the object, so a
    reload of the same version number is another key), signature, input names, dtypes and
    inner shapes."""
    return (self.servable.name, self.servable.version, id(self.servable),
            self.signature_name, tuple(sorted(
                (alias, tensor.dtype.name, tuple(tensor.shape[1:]))
                for alias, tensor in self.inputs.items())))


def prepare_predict(servable, request: predict_pb2.PredictRequest,
                    max_batch_size: int) -> PreparedPredict:
  """Checks the request against the signature and builds its input tensors; raises
  errors.ServingError on bad input."""
  name = request.model_spec.signature_name or DEFAULT_SIGNATURE
  signature = servable.signature_defs.get(name)
  function = servable.functions.get(name)
  if signature is None or function is None:
    # TF Serving's code for this is FAILED_PRECONDITION, not INVALID_ARGUMENT.
    raise errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                              f'Serving signature key "{name}" not found.')
  protos = _input_protos(signature, request)
  aliases = _output_aliases(signature, request.output_filter)
  for alias, proto in sorted(protos.items()):  # every input, before any tensor is built
    _check_input(alias, proto, signature.inputs[alias], max_batch_size)
  inputs = {alias: _input_tensor(alias, proto, signature.inputs[alias])
            for alias, proto in protos.items()}
  rows = None
  if batches(signature):
    sizes = {int(tensor.shape[0]) for tensor in inputs.values()}
    rows = sizes.pop() if len(sizes) == 1 else None  # unequal batches: the model decides
  return PreparedPredict(servable, request.model_spec.name, name, function, inputs, aliases,
                         rows)


def batches(signature) -> bool:
  """Whether requests to this signature can be concatenated along dim 0 and their answers
  split back: every input and output has a known rank and an open first dimension."""
  tensors = list(signature.inputs.values()) + list(signature.outputs.values())
  return bool(tensors) and all(
      not t.tensor_shape.unknown_rank and t.tensor_shape.dim and t.tensor_shape.dim[0].size < 0
      for t in tensors)


def call_model(prepared: PreparedPredict,
               inputs: Optional[Dict[str, tf.Tensor]] = None) -> Dict[str, tf.Tensor]:
  """The signature's function on the request's inputs (or on `inputs`: a merged batch)."""
  return _call(prepared.function, prepared.inputs if inputs is None else inputs)


def predict_response(prepared: PreparedPredict,
                     outputs: Dict[str, tf.Tensor]) -> predict_pb2.PredictResponse:
  response = predict_pb2.PredictResponse()
  response.model_spec.name = prepared.model_name
  response.model_spec.version.value = prepared.servable.version
  response.model_spec.signature_name = prepared.signature_name
  for alias in prepared.output_aliases:
    response.outputs[alias].CopyFrom(as_proto_field(outputs[alias]))
  return response


def run_predict(servable, request: predict_pb2.PredictRequest,
                max_batch_size: int) -> predict_pb2.PredictResponse:
  """`servable` is a serving.servable.Servable; raises errors.ServingError on bad input.
  The request runs alone (no batching)."""
  prepared = prepare_predict(servable, request, max_batch_size)
  return predict_response(prepared, call_model(prepared))


def as_proto_field(value: tf.Tensor) -> tensor_pb2.TensorProto:
  field = "string_val" if value.dtype == tf.string else _VALUE_FIELDS.get(value.dtype)
  if field is None:  # rare types (half, complex, ...)
    return tf.make_tensor_proto(value.numpy(), dtype=value.dtype)
  # Filling the repeated field directly: tf.make_tensor_proto costs ~10x more per call.
  proto = tensor_pb2.TensorProto(dtype=value.dtype.as_datatype_enum,
                                 tensor_shape=value.shape.as_proto())
  getattr(proto, field).extend(np.asarray(value.numpy()).ravel())  # 0-d values too
  return proto


def _names(keys) -> str:
  return "{" + ",".join(sorted(keys)) + "}"


def _input_protos(signature, request) -> Dict[str, tensor_pb2.TensorProto]:
  sent, expected = set(request.inputs), set(signature.inputs)
  extra, missing = sent - expected, expected - sent - set(signature.defaults)
  if len(sent) > len(expected) or (len(sent) < len(expected) and not signature.defaults):
    raise errors.invalid_argument(
        f"input size does not match signature: {len(sent)}!={len(expected)} "
        f"len({_names(sent)}) != len({_names(expected)}). Sent extra: {_names(extra)}. "
        f"Missing but required: {_names(expected - sent)}.")
  if extra:
    raise errors.invalid_argument(
        f"input tensor alias not found in signature: {sorted(extra)[0]}. "
        f"Inputs expected to be in the set {_names(expected)}.")
  if missing:  # only possible when some inputs have defaults
    raise errors.invalid_argument(
        f"Missing but required: {_names(missing)} (only inputs with defaults may be left "
        f"out of {_names(expected)}).")
  return {alias: request.inputs[alias] if alias in request.inputs else signature.defaults[alias]
          for alias in signature.inputs}


def _dtype_name(dtype: int) -> str:
  return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def _shape_text(shape: tensor_shape_pb2.TensorShapeProto) -> str:
  return "[" + ",".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


# The TensorProto field that holds each dtype's values, and how many entries one element
# takes there (complex numbers are two).
_PROTO_FIELDS = {
    types_pb2.DT_STRING: ("string_val", 1), types_pb2.DT_FLOAT: ("float_val", 1),
    types_pb2.DT_DOUBLE: ("double_val", 1), types_pb2.DT_INT64: ("int64_val", 1),
    types_pb2.DT_INT32: ("int_val", 1), types_pb2.DT_INT16: ("int_val", 1),
    types_pb2.DT_INT8: ("int_val", 1), types_pb2.DT_UINT8: ("int_val", 1),
    types_pb2.DT_UINT16: ("int_val", 1), types_pb2.DT_UINT32: ("uint32_val", 1),
    types_pb2.DT_UINT64: ("uint64_val", 1), types_pb2.DT_BOOL: ("bool_val", 1),
    types_pb2.DT_HALF: ("half_val", 1), types_pb2.DT_BFLOAT16: ("half_val", 1),
    types_pb2.DT_COMPLEX64: ("scomplex_val", 2), types_pb2.DT_COMPLEX128: ("dcomplex_val", 2),
}


def _values_sent(proto: tensor_pb2.TensorProto) -> int:
  """How many elements the proto carries (not how many it declares); -1 when they
  cannot be counted (a dtype without a value field, or tensor_content that is not a
  whole number of elements)."""
  content = len(proto.tensor_content)  # (each read of the field copies it)
  if content:
    if proto.dtype == types_pb2.DT_STRING:
      return -1
    size = tf.as_dtype(proto.dtype).size
    return content // size if content % size == 0 else -1
  field, per_element = _PROTO_FIELDS.get(proto.dtype, (None, 1))
  if field is None:
    return -1
  count = len(getattr(proto, field))
  return count // per_element if count % per_element == 0 else -1


def _check_input(alias: str, proto, info, max_batch_size: int) -> None:
  """Refuses (INVALID_ARGUMENT) an input of the wrong dtype or shape, or one whose tensor
  would be too large or does not match the values it carries, from the proto alone:
  nothing is allocated for it."""
  if proto.dtype != info.dtype:
    raise errors.invalid_argument(
        f"input '{alias}' has dtype {_dtype_name(proto.dtype)}; "
        f"the signature expects {_dtype_name(info.dtype)}")
  if proto.tensor_shape.unknown_rank:
    raise errors.invalid_argument(f"input '{alias}' has an unknown rank; send its shape")
  dims = [d.size for d in proto.tensor_shape.dim]
  if any(d < 0 for d in dims):
    raise errors.invalid_argument(
        f"input '{alias}' declares a negative dimension: {_dims_text(dims)}")
  expected = info.tensor_shape
  batched = expected.unknown_rank or (expected.dim and expected.dim[0].size < 0)
  if batched and dims and dims[0] > max_batch_size:
    # TF Serving's batching scheduler's message.
    raise errors.invalid_argument(
        f"Task size {dims[0]} is larger than maximum input batch size {max_batch_size} "
        f"(input '{alias}')")
  elements = 1
  for d in dims:  # Python integers: no overflow, however large the declared dimensions
    elements *= d
  limit = max_batch_size * MAX_VALUES_PER_ROW
  if elements > limit:
    raise errors.invalid_argument(
        f"input '{alias}' declares {_dims_text(dims)} = {elements:,} values; at most "
        f"{limit:,} are accepted (max batch size {max_batch_size} x {MAX_VALUES_PER_ROW} "
        "per row)")
  sent = _values_sent(proto)
  repeated = sent == 1 and elements <= max_batch_size  # one value filling a small shape
  if sent != elements and not repeated:
    carried = "values that cannot be counted" if sent < 0 else f"{sent:,} value(s)"
    raise errors.invalid_argument(
        f"tensor parsing error: {alias}: it declares shape {_dims_text(dims)} "
        f"({elements:,} values) but carries {carried}")
  expected_dims = [d.size for d in expected.dim]
  if not expected.unknown_rank and (len(dims) != len(expected_dims) or any(
      want >= 0 and want != got for want, got in zip(expected_dims, dims))):
    raise errors.invalid_argument(
        f"input '{alias}' has shape {_dims_text(dims)}; the signature expects "
        f"{_shape_text(expected)} (rank {len(expected_dims)}, ? = any size)")


def _dims_text(dims) -> str:
  return "[" + ",".join(map(str, dims)) + "]"


def _input_tensor(alias: str, proto, info) -> tf.Tensor:
  """The tensor of an input that passed _check_input."""
  try:
    array = tf.make_ndarray(proto)
  except Exception:  # malformed TensorProto
    raise errors.invalid_argument(f"tensor parsing error: {alias}") from None
  return tf.constant(array, dtype=tf.as_dtype(info.dtype))


def _output_aliases(signature, output_filter) -> List[str]:
  if not output_filter:
    return list(signature.outputs)
  aliases = []
  for alias in output_filter:
    if alias not in signature.outputs:
      raise errors.invalid_argument(
          f"output tensor alias not found in signature: {alias} "
          f"Outputs expected to be in the set {_names(signature.outputs)}.")
    if alias in aliases:
      raise errors.invalid_argument(f"duplicate output tensor alias: {alias}")
    aliases.append(alias)
  return aliases


def _call(function, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  try:
    return function(**inputs)
  except tf.errors.OpError as e:  # the model's own error, with TensorFlow's status code
    raise errors.ServingError(errors.status_code(e.error_code), e.message) from None
  except (TypeError, ValueError) as e:  # inputs the function refuses to bind
    raise errors.invalid_argument(str(e)) from None
