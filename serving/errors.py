"""The one error type the model server answers with: a gRPC status code and a message.

Codes and wording follow TF Serving's (tensorflow_serving/servables/tensorflow/
predict_util.cc, core/basic_manager.cc, model_servers/get_model_status_impl.cc), so a
client that branches on the status of a real tensorflow_model_server behaves the same.
"""
import grpc

# TensorFlow's error codes and gRPC's status codes are both google.rpc.Code, number for number.
_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}


class ServingError(Exception):
  """A request the server answers with a non-OK status (and keeps serving)."""

  def __init__(self, code: grpc.StatusCode, message: str):
    super().__init__(message)
    self.code = code
    self.message = message


def status_code(number: int) -> grpc.StatusCode:
  """TensorFlow error code (e.g. tf.errors.OpError.error_code) -> gRPC status code."""
  return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def invalid_argument(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
  return ServingError(grpc.StatusCode.NOT_FOUND, message)
