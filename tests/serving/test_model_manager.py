"""Which version the server serves, poll by poll, with a fake loader (no TensorFlow
models): incomplete versions are never loaded, swaps and rollbacks are logged with the
model, the version and the reason."""
import logging
import os
import shutil

import pytest

from recsys_tfx.schema import push_manifest
from recsys_tfx.serving.model_manager import ModelManager
from recsys_tfx.serving.servable import Servable

LOGGER = "recsys_tfx.serving.model_manager"


def write_version(model_dir, version: int, files=("saved_model.pb", "variables/v.data"),
                  marker: bool = True) -> str:
  path = os.path.join(str(model_dir), str(version))
  for name in files:
    os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
    with open(os.path.join(path, name), "w") as f:
      f.write(f"{name} of version {version}\n")
  if marker:
    push_manifest.write_marker(path)
  return path


class FakeLoader:
  """Loads anything that has a saved_model.pb; records what it loaded."""

  def __init__(self):
    self.loaded = []

  def __call__(self, name, version, path):
    if not os.path.exists(os.path.join(path, "saved_model.pb")):
      raise FileNotFoundError(f"{path} has no saved_model.pb")
    self.loaded.append((name, version))
    return Servable(name, version, path, {}, {}, None)


@pytest.fixture
def base(tmp_path):
  os.makedirs(tmp_path / "toy")
  return tmp_path


def manager(base) -> ModelManager:
  return ModelManager(str(base), poll_seconds=0.01, load=FakeLoader())


def test_marked_version_loads_only_once_every_listed_file_is_there(base):
  write_version(base / "toy", 1)
  complete = write_version(base / "toy", 2)
  # Version 2 as a hand copy that has the marker (copied first) but not yet all files.
  staged = str(base / "staged")
  shutil.move(complete, staged)
  os.makedirs(complete)
  shutil.copy(os.path.join(staged, push_manifest.MARKER), complete)
  shutil.copy(os.path.join(staged, "saved_model.pb"), complete)
  m = manager(base)
  m.poll()
  assert m.served_versions() == {"toy": 1}
  m.poll()
  assert m.served_versions() == {"toy": 1}  # however many polls
  os.makedirs(os.path.join(complete, "variables"))
  with open(os.path.join(staged, "variables", "v.data")) as f:
    data = f.read()
  with open(os.path.join(complete, "variables", "v.data"), "w") as f:
    f.write(data[:5])  # half of the last file
  m.poll()
  assert m.served_versions() == {"toy": 1}
  shutil.copy(os.path.join(staged, "variables", "v.data"), os.path.join(complete, "variables"))
  m.poll()
  assert m.served_versions() == {"toy": 2}
  assert m._load.loaded == [("toy", 1), ("toy", 2)]


def test_unmarked_version_loads_once_unchanged_across_two_polls(base):
  write_version(base / "toy", 1)
  path = write_version(base / "toy", 2, files=("saved_model.pb",), marker=False)
  m = manager(base)
  m.poll()
  assert m.served_versions() == {"toy": 1}  # first sight: it may still be being copied
  with open(os.path.join(path, "more"), "w") as f:
    f.write("still copying")
  m.poll()
  assert m.served_versions() == {"toy": 1}  # changed since: still copying
  m.poll()
  assert m.served_versions() == {"toy": 2}  # unchanged across two polls


def test_start_takes_a_second_look_at_unmarked_versions(base):
  write_version(base / "toy", 1, marker=False)
  m = manager(base)
  m.start()
  try:
    assert m.served_versions() == {"toy": 1}
  finally:
    m.stop()


def test_unmarked_served_version_is_reloaded_when_its_files_change(base, caplog):
  path = write_version(base / "toy", 1, files=("saved_model.pb",), marker=False)
  m = manager(base)
  m.poll()
  m.poll()
  assert m.served_versions() == {"toy": 1}
  with open(os.path.join(path, "assets_user_id"), "w") as f:  # the rest of a paused copy
    f.write("u1\nu2\n")
  caplog.set_level(logging.INFO, LOGGER)
  m.poll()  # changing: not yet
  m.poll()
  assert m._load.loaded == [("toy", 1), ("toy", 1)]
  assert "reload: the files of version 1 changed after it was loaded" in caplog.text


def test_every_load_swap_failure_and_rollback_is_logged_with_model_version_and_reason(
    base, caplog):
  caplog.set_level(logging.INFO, LOGGER)
  write_version(base / "toy", 1)
  m = manager(base)
  m.poll()
  write_version(base / "toy", 2)
  m.poll()
  broken = write_version(base / "toy", 3, files=("variables/v.data",))
  m.poll()
  assert m.served_versions() == {"toy": 2}
  shutil.rmtree(os.path.join(str(base), "toy", "2"))  # the live version is deleted
  m.poll()
  assert m.served_versions() == {"toy": 1}
  lines = [(r.levelname, r.getMessage()) for r in caplog.records]
  messages = "\n".join(message for _, message in lines)
  assert "serving toy version 1 (loaded in" in messages and "the newest complete version" \
      in messages
  assert "swapped toy from version 1 to version 2" in messages
  assert "a newer version than 1" in messages
  assert f"failed to load toy version 3 from {broken}" in messages
  assert "still serving version 2" in messages
  assert "swapped toy from version 2 to version 1" in messages
  assert "rollback: the served version 2 was removed from" in messages
  assert all(level in ("INFO", "WARNING", "ERROR") for level, _ in lines)


def test_removed_version_with_nothing_to_roll_back_to_keeps_serving_and_says_so(
    base, caplog):
  caplog.set_level(logging.INFO, LOGGER)
  write_version(base / "toy", 1)
  m = manager(base)
  m.poll()
  shutil.rmtree(os.path.join(str(base), "toy", "1"))
  m.poll()
  m.poll()
  assert m.served_versions() == {"toy": 1}
  warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
  assert len(warnings) == 1 and "still serving version 1 from memory" in warnings[0]


def test_waiting_is_logged_once_per_state_not_every_poll(base, caplog):
  caplog.set_level(logging.INFO, LOGGER)
  write_version(base / "toy", 1)
  path = write_version(base / "toy", 2)
  os.remove(os.path.join(path, "saved_model.pb"))
  m = manager(base)
  for _ in range(5):
    m.poll()
  waiting = [r.getMessage() for r in caplog.records if "not loading toy version 2" in
             r.getMessage()]
  assert len(waiting) == 1 and "missing saved_model.pb" in waiting[0]


def test_removed_version_whose_only_fallback_is_broken_is_said_once(base, caplog):
  caplog.set_level(logging.INFO, LOGGER)
  write_version(base / "toy", 1, files=("variables/v.data",))  # no saved_model.pb: broken
  m = manager(base)
  write_version(base / "toy", 2)
  m.poll()
  shutil.rmtree(os.path.join(str(base), "toy", "2"))
  for _ in range(4):
    m.poll()
  assert m.served_versions() == {"toy": 2}
  stuck = [r.getMessage() for r in caplog.records if "no other version can be loaded" in
           r.getMessage()]
  assert len(stuck) == 1 and "still serving it from memory" in stuck[0]
