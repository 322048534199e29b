"""AtomicPusher's executor: TFX's Pusher executor with the copy into the serving
directory made atomic (component.py says why).

Local base directory: copy to <base>/.<version>.incoming-<random>/ (a name that is not a
version number, so servers ignore it), write the completion marker last, rename to
<base>/<version>/. A run killed mid-copy leaves only the hidden staging directory, which
no server loads (the next push writes a new version). A bucket URI (gs://, s3://) has no
atomic directory rename: there the version is written in place, saved_model.pb and then
the marker last, and servers that check the marker (ours) still never load it early.
"""
import os
import time
import uuid
from typing import Any, Dict, List, Optional

from absl import logging
from tfx import types
from tfx.components.pusher import executor as tfx_pusher
from tfx.dsl.io import fileio
from tfx.proto import pusher_pb2
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils, proto_utils

from recsys_tfx.schema import push_manifest

SAVED_MODEL = "saved_model.pb"


def _files(directory: str) -> Dict[str, int]:
  """{path relative to directory: size} of every file under it (local or bucket), but a
  completion marker it may hold already (the new one replaces it)."""
  found = {}
  for root, _, names in fileio.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      found[os.path.relpath(path, directory).replace(os.sep, "/")] = fileio.stat(path).length
  found.pop(push_manifest.MARKER, None)
  return found


def _write_marker(directory: str, files: Dict[str, int], source: str) -> None:
  with fileio.open(os.path.join(directory, push_manifest.MARKER), "w") as f:
    f.write(push_manifest.manifest_text(files, source))


def pushed_before(model_path: str, base_directory: str) -> Optional[str]:
  """The version under base_directory that already holds this model (its marker names
  model_path as its source), if any. A rerun whose validator ran again (its baseline,
  the latest blessed model, is now this very model) then pushes nothing new: no second
  version of the same model for servers to swap to."""
  if not fileio.isdir(base_directory):
    return None
  versions = sorted((int(name.strip("/")) for name in fileio.listdir(base_directory)
                     if name.strip("/").isdigit()), reverse=True)
  for version in versions:
    marker = os.path.join(base_directory, str(version), push_manifest.MARKER)
    if not fileio.exists(marker):
      continue
    with fileio.open(marker) as f:
      if push_manifest.source_of(f.read()) == model_path:
        return str(version)
  return None


def push_version(model_path: str, base_directory: str, version: str) -> str:
  """Copies the SavedModel at model_path to <base_directory>/<version>/ so that it appears
  complete, with the completion marker; returns that directory."""
  target = os.path.join(base_directory, version)
  files = _files(model_path)
  fileio.makedirs(base_directory)
  if "://" in base_directory:  # object stores: no atomic rename of a directory
    io_utils.copy_dir(model_path, target, deny_regex_patterns=[r"saved_model\.pb"])
    if SAVED_MODEL in files:
      io_utils.copy_file(os.path.join(model_path, SAVED_MODEL),
                         os.path.join(target, SAVED_MODEL))
    _write_marker(target, files, model_path)
    return target
  staging = os.path.join(base_directory, f".{version}.incoming-{uuid.uuid4().hex[:8]}")
  try:
    io_utils.copy_dir(model_path, staging)
    _write_marker(staging, files, model_path)
    os.rename(staging, target)  # fails if the version exists: a push never overwrites one
  except BaseException:
    if fileio.exists(staging):
      fileio.rmtree(staging)
    raise
  return target


class Executor(tfx_pusher.Executor):

  def Do(self, input_dict: Dict[str, List[types.Artifact]],
         output_dict: Dict[str, List[types.Artifact]],
         exec_properties: Dict[str, Any]) -> None:
    """TFX's Pusher.Do for a filesystem destination, with push_version's copy."""
    self._log_startup(input_dict, output_dict, exec_properties)
    model_push = artifact_utils.get_single_instance(
        output_dict[standard_component_specs.PUSHED_MODEL_KEY])
    if not self.CheckBlessing(input_dict):
      self._MarkNotPushed(model_push)
      return
    model_path = self.GetModelPath(input_dict)
    destination = pusher_pb2.PushDestination()
    proto_utils.json_to_proto(exec_properties[standard_component_specs.PUSH_DESTINATION_KEY],
                              destination)
    base_directory = destination.filesystem.base_directory
    version = pushed_before(model_path, base_directory)
    if version is not None:
      serving_path = os.path.join(base_directory, version)
      logging.info("Model %s is already at %s; not pushed again.", model_path, serving_path)
    else:
      version = str(int(time.time()))
      while fileio.exists(os.path.join(base_directory, version)):  # two pushes in 1 second
        version = str(int(version) + 1)
      serving_path = push_version(model_path, base_directory, version)
      logging.info("Model written to serving path %s (complete, with %s).", serving_path,
                   push_manifest.MARKER)
    io_utils.copy_dir(model_path, model_push.uri)  # the archive copy, as TFX's Pusher keeps
    self._MarkPushed(model_push, pushed_destination=serving_path, pushed_version=version)
