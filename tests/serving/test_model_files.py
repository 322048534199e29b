"""The model base through tf.io.gfile (serving/model_files.py), so a bucket URI (gs://, as
the Kubeflow pusher writes) works as --model-base: the same code on a local path, and on
TensorFlow's in-memory file system ram://, where a SavedModel loads and is served over a
real socket (a bucket cannot be reached from here)."""
import itertools
import os

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_toys
from recsys_tfx.schema import push_manifest
from recsys_tfx.serving import model_files
from recsys_tfx.serving.model_manager import ModelManager, State
from recsys_tfx.serving.model_server import ModelServer
from test_model_server import outputs, predict_request

_bases = itertools.count()


def _ram_base() -> str:
  return f"ram://model_base_{os.getpid()}_{next(_bases)}"  # the file system is per process


def _push(base: str, name: str, version: int, files=None) -> str:
  """A toy retrieval model at <base>/<name>/<version>, with a completion marker written
  through gfile (what the pusher's fileio does on a bucket) listing `files` ({path:
  size}; default: what is there)."""
  path = model_files.join(base, name, str(version))
  serving_toys.save_retrieval(path)
  if files is None:
    files = {relative: size for relative, size, _ in model_files.fingerprint(path)}
  # (Written once: ram:// appends to a file that is opened again for writing.)
  with tf.io.gfile.GFile(model_files.join(path, push_manifest.MARKER), "w") as f:
    f.write(push_manifest.manifest_text(files))
  return path


@pytest.fixture(params=["local", "ram"])
def base(request, tmp_path):
  return str(tmp_path / "models") if request.param == "local" else _ram_base()


def test_versions_are_listed_checked_and_loaded_on_any_file_system(base):
  _push(base, "retrieval", 1)
  incomplete = _push(base, "retrieval", 2, files={"variables/extra": 5})
  tf.io.gfile.makedirs(model_files.join(base, ".tmp-3"))  # hidden: not a model
  manager = ModelManager(base, poll_seconds=60)
  manager.poll()

  assert sorted(model_files.listdir(base)) == [".tmp-3", "retrieval"]
  marked, problem = model_files.check_marker(incomplete)
  assert marked and "missing variables/extra" in problem
  assert manager.served_versions() == {"retrieval": 1}  # version 2 is incomplete
  assert manager.statuses("retrieval")[1].state == State.AVAILABLE
  servable = manager.get("retrieval")
  got = servable.functions["serving_default"](user_id=tf.constant(["u0"]))
  assert got["item_ids"].shape == (1, serving_toys.K)


def test_a_local_marker_reads_the_same_through_gfile(tmp_path):
  path = str(tmp_path / "v")
  serving_toys.save_retrieval(path)
  push_manifest.write_marker(path)
  assert model_files.check_marker(path) == push_manifest.check(path) == (True, None)
  os.remove(os.path.join(path, "saved_model.pb"))
  assert model_files.check_marker(path) == push_manifest.check(path)
  assert model_files.check_marker(str(tmp_path)) == (False, f"no {push_manifest.MARKER} yet")


def test_missing_paths_are_file_not_found_errors():
  with pytest.raises(FileNotFoundError):
    model_files.listdir(_ram_base() + "/nothing")
  with pytest.raises(FileNotFoundError):
    model_files.read_text(_ram_base() + "/nothing.json")
  assert not model_files.isdir(_ram_base()) and not model_files.exists(_ram_base())
  assert model_files.fingerprint(_ram_base()) == ()


def test_a_ram_model_base_is_served_over_grpc():
  base = _ram_base()
  _push(base, "retrieval", 1)
  server = ModelServer(base, port=0, poll_seconds=60).start()
  try:
    with grpc.insecure_channel(server.address) as channel:
      stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
      response = stub.Predict(predict_request("retrieval", {"user_id": ["u0", "u1"]}),
                              timeout=30)
  finally:
    server.stop(grace=1)
  direct = tf.saved_model.load(f"{base}/retrieval/1").signatures["serving_default"]
  np.testing.assert_array_equal(outputs(response)["item_ids"],
                                direct(user_id=tf.constant(["u0", "u1"]))["item_ids"].numpy())
  assert response.model_spec.version.value == 1


def test_a_missing_model_base_is_refused(tmp_path):
  with pytest.raises(FileNotFoundError, match="is not a directory"):
    ModelServer(_ram_base(), port=0)
