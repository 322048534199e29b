"""Runs one PredictRequest against one loaded model version.

The checks and their order follow TF Serving's predict_util.cc: signature lookup, input
names, output filter, then the signature's function. TF Serving leaves dtype and shape
errors to the TensorFlow session ("Expects arg[0] to be string but float is provided");
here they are checked up front so the message names the input, with the same status
(INVALID_ARGUMENT).
"""
from typing import Dict, List

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
from tensorflow_serving.apis import predict_pb2

from recsys_tfx.serving import errors

DEFAULT_SIGNATURE = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY
# TF Serving's default response encoding (Tensor::AsProtoField) puts values in the typed
# repeated field, not tensor_content, and clients often read e.g. `.float_val` directly.
_VALUE_FIELDS = {
    tf.float32: "float_val", tf.float64: "double_val", tf.int64: "int64_val",
    tf.int32: "int_val", tf.int16: "int_val", tf.int8: "int_val", tf.uint16: "int_val",
    tf.uint8: "int_val", tf.uint32: "uint32_val", tf.uint64: "uint64_val", tf.bool: "bool_val",
}


def run_predict(servable, request: predict_pb2.PredictRequest,
                max_batch_size: int) -> predict_pb2.PredictResponse:
  """`servable` is a serving.servable.Servable; raises errors.ServingError on bad input."""
  name = request.model_spec.signature_name or DEFAULT_SIGNATURE
  signature = servable.signature_defs.get(name)
  function = servable.functions.get(name)
  if signature is None or function is None:
    # TF Serving's code for this is FAILED_PRECONDITION, not INVALID_ARGUMENT.
    raise errors.ServingError(grpc.StatusCode.FAILED_PRECONDITION,
                              f'Serving signature key "{name}" not found.')
  inputs = _input_tensors(signature, request)
  aliases = _output_aliases(signature, request.output_filter)
  _check_batch_size(signature, inputs, max_batch_size)
  outputs = _call(function, inputs)

  response = predict_pb2.PredictResponse()
  response.model_spec.name = request.model_spec.name
  response.model_spec.version.value = servable.version
  response.model_spec.signature_name = name
  for alias in aliases:
    response.outputs[alias].CopyFrom(as_proto_field(outputs[alias]))
  return response


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


def _input_tensors(signature, request) -> Dict[str, tf.Tensor]:
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
  tensors = {}
  for alias, info in signature.inputs.items():
    proto = request.inputs[alias] if alias in request.inputs else signature.defaults[alias]
    tensors[alias] = _input_tensor(alias, proto, info)
  return tensors


def _dtype_name(dtype: int) -> str:
  return types_pb2.DataType.Name(dtype) if dtype in types_pb2.DataType.values() else str(dtype)


def _shape_text(shape: tensor_shape_pb2.TensorShapeProto) -> str:
  return "[" + ",".join("?" if d.size < 0 else str(d.size) for d in shape.dim) + "]"


def _input_tensor(alias: str, proto, info) -> tf.Tensor:
  if proto.dtype != info.dtype:
    raise errors.invalid_argument(
        f"input '{alias}' has dtype {_dtype_name(proto.dtype)}; "
        f"the signature expects {_dtype_name(info.dtype)}")
  try:
    array = tf.make_ndarray(proto)
  except Exception:  # malformed TensorProto (values do not fit the shape, ...)
    raise errors.invalid_argument(f"tensor parsing error: {alias}") from None
  expected = info.tensor_shape
  if not expected.unknown_rank:
    dims = [d.size for d in expected.dim]
    if len(array.shape) != len(dims) or any(
        want >= 0 and want != got for want, got in zip(dims, array.shape)):
      raise errors.invalid_argument(
          f"input '{alias}' has shape [{','.join(map(str, array.shape))}]; the signature "
          f"expects {_shape_text(expected)} (rank {len(dims)}, ? = any size)")
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


def _check_batch_size(signature, inputs: Dict[str, tf.Tensor], max_batch_size: int):
  """Inputs whose first dimension is the batch (unknown in the signature) may hold at most
  max_batch_size rows; the message is TF Serving's batching scheduler's."""
  for alias, tensor in sorted(inputs.items()):
    shape = signature.inputs[alias].tensor_shape
    batched = shape.unknown_rank or (shape.dim and shape.dim[0].size < 0)
    if batched and tensor.shape.rank and tensor.shape[0] > max_batch_size:
      raise errors.invalid_argument(
          f"Task size {tensor.shape[0]} is larger than maximum input batch size "
          f"{max_batch_size} (input '{alias}')")


def _call(function, inputs: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  try:
    return function(**inputs)
  except tf.errors.OpError as e:  # the model's own error, with TensorFlow's status code
    raise errors.ServingError(errors.status_code(e.error_code), e.message) from None
  except (TypeError, ValueError) as e:  # inputs the function refuses to bind
    raise errors.invalid_argument(str(e)) from None
