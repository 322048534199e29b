"""TF Serving's two gRPC services over a ModelManager: PredictionService (Predict,
GetModelMetadata) and ModelService (GetModelStatus). Classify, Regress, MultiInference and
HandleReloadConfigRequest answer UNIMPLEMENTED (the generated base classes do that).

Predictor is the Predict both APIs share (gRPC here, REST in serving/rest.py): it
resolves the version, checks the request, runs it (through the batcher when batching is
on) and counts it in the metrics.
"""
import functools
import json
import logging
import time
from typing import Callable, Dict, Optional

import grpc
from google.protobuf import json_format, struct_pb2
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_service_pb2_grpc, prediction_service_pb2_grpc)

from recsys_tfx.schema import export_contract as contract
from recsys_tfx.serving import errors, model_files
from recsys_tfx.serving.batching import Batcher
from recsys_tfx.serving.metrics import UNKNOWN, Metrics
from recsys_tfx.serving.model_manager import ModelManager
from recsys_tfx.serving.servable import Servable
from recsys_tfx.serving.signature_runner import (DEFAULT_SIGNATURE, call_model,
                                                 predict_response, prepare_predict)

log = logging.getLogger(__name__)

SIGNATURE_DEF = "signature_def"  # the one metadata field TF Serving supports
# This server's one addition: a recommender servable's composition (the retrieval and
# ranking versions it was composed from, schema/export_contract.COMPOSITION_FILE), as a
# google.protobuf.Struct. TF Serving itself refuses the field.
COMPOSITION = "composition"


def _rpc(method):
  """A ServingError becomes its status; anything else INTERNAL (and is logged). Either way
  only this request fails."""

  @functools.wraps(method)
  def handler(self, request, context):
    try:
      return method(self, request, context)
    except errors.ServingError as e:
      context.abort(e.code, e.message)
    except Exception as e:
      log.exception("%s failed", method.__name__)
      context.abort(grpc.StatusCode.INTERNAL, f"{type(e).__name__}: {e}")

  return handler


def _require_model_spec(request) -> None:
  if not request.HasField("model_spec"):
    raise errors.invalid_argument("Missing ModelSpec")


def servable_for(manager: ModelManager, request) -> Servable:
  _require_model_spec(request)
  spec = request.model_spec
  if not spec.name:
    raise errors.invalid_argument("ModelSpec has no name specified.")
  choice = spec.WhichOneof("version_choice")
  if choice == "version_label":
    # No labels are configured: TF Serving's answer when a label is not in its config.
    raise errors.invalid_argument(f"Unrecognized servable version label: {spec.version_label}")
  return manager.get(spec.name, spec.version.value if choice == "version" else None)


class Predictor:
  """Predict for either API; raises errors.ServingError on bad requests."""

  def __init__(self, manager: ModelManager, max_batch_size: int,
               batcher: Optional[Batcher] = None, metrics: Optional[Metrics] = None):
    self.manager = manager
    self.max_batch_size = max_batch_size
    self.batcher = batcher
    self.metrics = metrics

  def predict(self, request, api: str, fill: Optional[Callable] = None):
    """`fill(servable, request)`, when given, completes the request once the version is
    known (REST reads its JSON by the signature's dtypes); its errors count like any."""
    started = time.monotonic()
    spec = request.model_spec
    # Labels of served names only (see serving/metrics.py): unknown ones stay UNKNOWN.
    model, signature, version = UNKNOWN, UNKNOWN, ""
    code = grpc.StatusCode.INTERNAL
    try:
      servable = servable_for(self.manager, request)
      model, version = servable.name, str(servable.version)
      if fill is not None:
        fill(servable, request)
      if (spec.signature_name or DEFAULT_SIGNATURE) in servable.signature_defs:
        signature = spec.signature_name or DEFAULT_SIGNATURE
      prepared = prepare_predict(servable, request, self.max_batch_size)
      if self.batcher is not None and prepared.rows is not None:
        outputs = self.batcher.run(prepared)
      else:
        outputs = call_model(prepared)
      response = predict_response(prepared, outputs)
      code = grpc.StatusCode.OK
      return response
    except errors.ServingError as e:
      code = e.code
      if model == UNKNOWN and spec.name and self.manager.statuses(spec.name):
        model = spec.name  # a known model, asked for a version it does not serve
      raise
    finally:
      if self.metrics is not None:
        self.metrics.observe_request(api, model, signature, version, code.name,
                                     time.monotonic() - started)


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):

  def __init__(self, predictor: Predictor):
    self._predictor = predictor
    self._manager = predictor.manager

  @_rpc
  def Predict(self, request, context):
    return self._predictor.predict(request, "grpc")

  @_rpc
  def GetModelMetadata(self, request, context):
    return model_metadata(self._manager, request)


class ModelService(model_service_pb2_grpc.ModelServiceServicer):

  def __init__(self, manager: ModelManager):
    self._manager = manager

  @_rpc
  def GetModelStatus(self, request, context):
    return model_status(self._manager, request)


def model_metadata(manager: ModelManager, request):
  """GetModelMetadata (either API)."""
  _require_model_spec(request)
  if not request.metadata_field:
    raise errors.invalid_argument(
        "GetModelMetadataRequest must specify at least one metadata_field")
  for field in request.metadata_field:
    if field not in (SIGNATURE_DEF, COMPOSITION):
      raise errors.invalid_argument(f"Metadata field {field} is not supported")
  servable = servable_for(manager, request)
  response = get_model_metadata_pb2.GetModelMetadataResponse()
  response.model_spec.name = servable.name
  response.model_spec.version.value = servable.version
  if SIGNATURE_DEF in request.metadata_field:
    response.metadata[SIGNATURE_DEF].Pack(signature_def_map(servable))
  if COMPOSITION in request.metadata_field:
    found = composition(servable)
    if found is None:
      raise errors.invalid_argument(f"{servable.name} version {servable.version} is not a "
                                    "composed recommender: it has no composition")
    response.metadata[COMPOSITION].Pack(json_format.ParseDict(found, struct_pb2.Struct()))
  return response


def composition(servable: Servable) -> Optional[Dict[str, object]]:
  """What a recommender servable composes (its composition file), None for other models."""
  path = model_files.join(servable.path, contract.COMPOSITION_FILE)
  if not model_files.exists(path):
    return None
  return json.loads(model_files.read_text(path))


def signature_def_map(servable: Servable) -> get_model_metadata_pb2.SignatureDefMap:
  signature_map = get_model_metadata_pb2.SignatureDefMap()
  for key, signature in servable.signature_defs.items():
    signature_map.signature_def[key].CopyFrom(signature)
  return signature_map


def model_status(manager: ModelManager, request):
  """GetModelStatus (either API)."""
  _require_model_spec(request)
  name = request.model_spec.name
  statuses = manager.statuses(name)
  if request.model_spec.HasField("version"):
    version = request.model_spec.version.value
    if version not in statuses:
      raise errors.not_found(f"Could not find version {version} of model {name}")
    statuses = {version: statuses[version]}
  elif not statuses:
    raise errors.not_found(f"Could not find any versions of model {name}")
  response = get_model_status_pb2.GetModelStatusResponse()
  for version in sorted(statuses, reverse=True):  # newest first, as TF Serving lists them
    status = statuses[version]
    entry = response.model_version_status.add(version=version, state=status.state)
    entry.status.error_code = status.error_code
    entry.status.error_message = status.error_message
  return response
