"""Config files for a real tensorflow_model_server over the pushed models:

  models.config             ModelServerConfig text proto: one entry per model directory
                            under the model base (retrieval, ranking), base_path the path
                            the container sees (/models/<name> by default)
  batching_parameters.txt   BatchingParameters text proto for --enable_batching

kubeflow/serving/tf-serving.yaml mounts the model volume at CONTAINER_BASE and reads both
files from there, so write them into the model base itself (the default) to ship them
with the models, or anywhere with --out.
"""
import dataclasses
import functools
import os
from typing import Dict, List

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

CONTAINER_BASE = "/models"  # where tf-serving.yaml mounts the model volume
MODELS_CONFIG = "models.config"
BATCHING_PARAMETERS = "batching_parameters.txt"
GRPC_PORT = 8500  # TF Serving's defaults; tf-serving.yaml uses the same
REST_PORT = 8501


@dataclasses.dataclass(frozen=True)
class BatchingParameters:
  """TF Serving's BatchingParameters (session_bundle_config.proto). One request is never
  split: max_batch_size must hold the ranker's largest request, one row per candidate
  (trainer.top_k: 100 in configs/demo.yaml), or TF Serving rejects it."""
  max_batch_size: int = 512
  batch_timeout_micros: int = 1000  # wait at most 1 ms to fill a batch
  num_batch_threads: int = 4  # about the serving container's CPU cores
  max_enqueued_batches: int = 100

  def __post_init__(self):
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      minimum = 0 if field.name == "batch_timeout_micros" else 1
      if not isinstance(value, int) or value < minimum:
        raise ValueError(f"batching {field.name} must be an integer >= {minimum}, got {value!r}")


def model_names(model_base: str) -> List[str]:
  """Every model directory under the base (the same rule as serving/model_manager.py)."""
  if not os.path.isdir(model_base):
    raise FileNotFoundError(f"model base {model_base} is not a directory (the Pusher writes "
                            "<model_base>/<model_name>/<version>/)")
  return sorted(n for n in os.listdir(model_base)
                if not n.startswith(".") and os.path.isdir(os.path.join(model_base, n)))


def models_config(names: List[str], container_base: str = CONTAINER_BASE
                  ) -> model_server_config_pb2.ModelServerConfig:
  config = model_server_config_pb2.ModelServerConfig()
  for name in names:
    entry = config.model_config_list.config.add()
    entry.name = name
    entry.base_path = f"{container_base.rstrip('/')}/{name}"
    entry.model_platform = "tensorflow"
    entry.model_version_policy.latest.num_versions = 1  # TF Serving's default, spelled out
  return config


def batching_parameters_text(params: BatchingParameters) -> str:
  # The proto is not in tensorflow-serving-api's Python package; its text form is simple.
  return "".join(f"{field.name} {{ value: {getattr(params, field.name)} }}\n"
                 for field in dataclasses.fields(params))


@functools.lru_cache(maxsize=None)
def batching_parameters_class():
  """TF Serving's BatchingParameters message (session_bundle_config.proto, fields 1-4:
  Int64Value), declared here because tensorflow-serving-api does not ship it."""
  pool = descriptor_pool.DescriptorPool()
  wrappers = descriptor_pb2.FileDescriptorProto()
  wrappers_pb2.DESCRIPTOR.CopyToProto(wrappers)
  pool.Add(wrappers)
  proto = descriptor_pb2.FileDescriptorProto(
      name="recsys_tfx/serving/batching_parameters.proto", package="tensorflow.serving",
      syntax="proto3", dependency=["google/protobuf/wrappers.proto"])
  message = proto.message_type.add(name="BatchingParameters")
  for number, name in enumerate(["max_batch_size", "batch_timeout_micros",
                                 "max_enqueued_batches", "num_batch_threads"], start=1):
    message.field.add(name=name, number=number, type_name=".google.protobuf.Int64Value",
                      type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
                      label=descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL)
  pool.Add(proto)
  return message_factory.MessageFactory(pool).GetPrototype(
      pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def read_batching_parameters(path: str) -> BatchingParameters:
  """A batching_parameters.txt (TF Serving's --batching_parameters_file); fields it leaves
  out take BatchingParameters' defaults. ValueError (naming the file) when it cannot be
  used."""
  try:
    with open(path) as f:
      text = f.read()
  except OSError as e:
    raise ValueError(f"batching parameters file {path}: {e.strerror}") from None
  message = batching_parameters_class()()
  try:
    text_format.Parse(text, message)
  except text_format.ParseError as e:
    names = ", ".join(f.name for f in dataclasses.fields(BatchingParameters))
    raise ValueError(f"{path}: not a BatchingParameters text proto with the fields this "
                     f"server supports ({names}; e.g. 'max_batch_size {{ value: 64 }}'): "
                     f"{e}") from None
  given = {field.name: getattr(message, field.name).value
           for field in dataclasses.fields(BatchingParameters)
           if message.HasField(field.name)}
  try:
    return BatchingParameters(**given)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from None


def _write(path: str, text: str) -> None:
  with open(path + ".tmp", "w") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def write(model_base: str, out_dir: str, container_base: str = CONTAINER_BASE,
          batching: BatchingParameters = BatchingParameters()) -> Dict[str, str]:
  """Writes both files into out_dir; returns {"models_config": path, "batching": path,
  "models": [names]}."""
  names = model_names(model_base)
  if not names:
    raise FileNotFoundError(f"no model directories under {model_base} (run the pipeline, or "
                            "`make demo`, to push models there first)")
  os.makedirs(out_dir, exist_ok=True)
  header = "# TF Serving's {} text proto{}.\n# Written by `recsys export-serving-config`.\n"
  source = f" for the models under {model_base}"
  paths = {"models_config": os.path.join(out_dir, MODELS_CONFIG),
           "batching": os.path.join(out_dir, BATCHING_PARAMETERS)}
  config_text = text_format.MessageToString(models_config(names, container_base))
  _write(paths["models_config"], header.format("ModelServerConfig", source) + config_text)
  _write(paths["batching"],
         header.format("BatchingParameters", "") + batching_parameters_text(batching))
  return {**paths, "models": names}
