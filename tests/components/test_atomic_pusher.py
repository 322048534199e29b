"""AtomicPusher: a pushed version appears whole (staged, marked last, renamed), only a
blessed model is pushed, and the component refuses a bad argument when it is built."""
import json
import os

import pytest
from tfx.components.pusher import executor as tfx_pusher
from tfx.proto import pusher_pb2
from tfx.types import standard_artifacts
from tfx.utils import io_utils, proto_utils

import serving_toys
from recsys_tfx.components.atomic_pusher.component import AtomicPusher
from recsys_tfx.components.atomic_pusher.executor import Executor, push_version
from recsys_tfx.schema import push_manifest


def _model(tmp_path):
  model = standard_artifacts.Model()
  model.uri = str(tmp_path / "model")
  serving_toys.save_vocab_toy(os.path.join(model.uri, "Format-Serving"), 7)
  return model


def _blessing(tmp_path, blessed: int):
  blessing = standard_artifacts.ModelBlessing()
  blessing.uri = str(tmp_path / f"blessing{blessed}")
  os.makedirs(blessing.uri)
  blessing.set_int_custom_property("blessed", blessed)
  return blessing


def _push(executor_class, tmp_path, blessed: int = 1):
  base = str(tmp_path / "serving" / "retrieval")
  pushed = standard_artifacts.PushedModel()
  pushed.uri = str(tmp_path / f"pushed{blessed}")
  destination = pusher_pb2.PushDestination(
      filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
  executor_class().Do({"model": [_model(tmp_path)],
                       "model_blessing": [_blessing(tmp_path, blessed)]},
                      {"pushed_model": [pushed]},
                      {"push_destination": proto_utils.proto_to_json(destination),
                       "custom_config": json.dumps({})})
  return base, pushed


def _watch_copies(monkeypatch, base: str):
  """Records, after every file copied, the version directories a server would see."""
  seen = []
  real_copy = io_utils.fileio.copy

  def copy(*args, **kwargs):
    result = real_copy(*args, **kwargs)
    seen.append(sorted(n for n in os.listdir(base) if n.isdigit())
                if os.path.isdir(base) else [])
    return result

  monkeypatch.setattr(io_utils.fileio, "copy", copy)
  return seen


def test_no_version_directory_is_visible_until_the_push_is_complete(tmp_path, monkeypatch):
  seen = _watch_copies(monkeypatch, str(tmp_path / "serving" / "retrieval"))
  base, pushed = _push(Executor, tmp_path)
  files = len(push_manifest.local_files(str(tmp_path / "model" / "Format-Serving")))
  # The serving copy (then the archive copy, after the version appeared whole).
  assert len(seen) >= files and all(visible == [] for visible in seen[:files]), seen
  [version] = [n for n in os.listdir(base) if not n.startswith(".")]
  assert os.listdir(base) == [version]  # no staging directory left behind
  target = os.path.join(base, version)
  assert push_manifest.check(target) == (True, None)
  assert pushed.get_int_custom_property("pushed") == 1
  assert pushed.get_string_custom_property("pushed_destination") == target
  assert pushed.get_string_custom_property("pushed_version") == version


def test_tfx_pusher_would_expose_a_half_written_version(tmp_path, monkeypatch):
  """Why AtomicPusher exists: TFX's own executor copies into the version directory."""
  seen = _watch_copies(monkeypatch, str(tmp_path / "serving" / "retrieval"))
  _push(tfx_pusher.Executor, tmp_path)
  files = len(push_manifest.local_files(str(tmp_path / "model" / "Format-Serving")))
  assert any(visible for visible in seen[:files - 1]), seen


def test_unblessed_model_is_not_pushed(tmp_path):
  base, pushed = _push(Executor, tmp_path, blessed=0)
  assert not os.path.exists(base)
  assert pushed.get_int_custom_property("pushed") == 0


def test_a_failed_copy_leaves_no_staging_directory(tmp_path, monkeypatch):
  model_dir = str(tmp_path / "model")
  serving_toys.save_vocab_toy(model_dir, 1)
  base = str(tmp_path / "serving")
  os.makedirs(os.path.join(base, "5"))  # the version exists: the rename must not replace it
  (tmp_path / "serving" / "5" / "saved_model.pb").write_text("another model")
  with pytest.raises(OSError):
    push_version(model_dir, base, "5")
  assert os.listdir(base) == ["5"]
  assert os.listdir(os.path.join(base, "5")) == ["saved_model.pb"]


def test_component_refuses_an_empty_base_directory():
  with pytest.raises(ValueError, match="AtomicPusher: base_directory must be a non-empty"):
    AtomicPusher(model=None, model_blessing=None, base_directory="")


def test_pushing_a_directory_that_has_a_marker_already_replaces_it(tmp_path):
  model_dir = str(tmp_path / "model")
  serving_toys.save_vocab_toy(model_dir, 1)
  push_manifest.write_marker(model_dir)  # e.g. a version copied out of a serving directory
  target = push_version(model_dir, str(tmp_path / "serving"), "3")
  assert push_manifest.check(target) == (True, None)


def test_a_model_pushed_before_is_not_pushed_again(tmp_path):
  """A rerun after a complete run validates the same model again (its baseline changed)
  and pushes it again: the version it already has is reused, no duplicate appears."""
  model = _model(tmp_path)
  base = str(tmp_path / "serving" / "retrieval")

  def push(blessing_name):
    pushed = standard_artifacts.PushedModel()
    pushed.uri = str(tmp_path / blessing_name)
    destination = pusher_pb2.PushDestination(
        filesystem=pusher_pb2.PushDestination.Filesystem(base_directory=base))
    Executor().Do({"model": [model], "model_blessing": [_blessing(tmp_path / blessing_name, 1)]},
                  {"pushed_model": [pushed]},
                  {"push_destination": proto_utils.proto_to_json(destination),
                   "custom_config": json.dumps({})})
    return pushed

  first, second = push("first"), push("second")
  assert len(os.listdir(base)) == 1
  assert second.get_string_custom_property("pushed_version") == \
      first.get_string_custom_property("pushed_version")
  assert second.get_int_custom_property("pushed") == 1
