"""The completion marker of a pushed model version, shared by the pusher and the server.

A version directory appears in TF Serving's layout (<serving_dir>/<model>/<version>/)
while it is being written unless whoever writes it is careful: TFX's Pusher copies file
by file straight into the version directory, and so does a hand copy (cp -r, rsync, a
bucket sync). A server that loads such a directory mid-copy serves half a model (e.g. a
vocabulary cut at a line boundary: every user past the cut is "unknown").

So a push writes MARKER last: a JSON manifest of every file of the version and its
size. A version is complete when its marker parses and every file it lists is there at
that size, whatever order the files arrived in, so even a hand copy of a pushed version
(which may copy the marker first) is not loaded until it is whole. Directories without a
marker (models pushed by other tools) are left to the server's other check: unchanged
across two polls (serving/model_manager.py).

Plain Python on local paths; check() takes the file functions of other file systems (the
server passes tf.io.gfile's, serving/model_files.py, for bucket model bases). The pusher
(components/atomic_pusher) builds the manifest with TFX's file I/O, so that it also
works for bucket URIs.
"""
import json
import os
from typing import Callable, Dict, Mapping, Optional, Tuple

MARKER = "push_complete.json"
FORMAT = 1


def manifest_text(files: Mapping[str, int], source: str = "") -> str:
  """The marker's content for files {path relative to the version directory: bytes};
  `source`: where the pushed model came from (a pusher finds its earlier pushes by it)."""
  return json.dumps({"format": FORMAT, "source": source,
                     "files": dict(sorted(files.items()))}, indent=1)


def source_of(text: str) -> str:
  """The `source` a marker's text records ("" when none or unreadable)."""
  try:
    return str(json.loads(text).get("source") or "")
  except (ValueError, AttributeError):
    return ""


def local_files(directory: str) -> Dict[str, int]:
  """{relative path: size} of every file under a local directory, the marker excepted."""
  found = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      relative = os.path.relpath(path, directory).replace(os.sep, "/")
      if relative != MARKER:
        found[relative] = os.path.getsize(path)
  return found


def write_marker(directory: str) -> None:
  """Marks a complete local version directory (the manifest of what is there now). The
  marker is written under a temporary name and renamed, so it is never read half-written."""
  text = manifest_text(local_files(directory))
  temporary = os.path.join(directory, f".{MARKER}.tmp")
  with open(temporary, "w") as f:
    f.write(text)
  os.replace(temporary, os.path.join(directory, MARKER))


def _read_local(path: str) -> str:
  with open(path) as f:
    return f.read()


def check(directory: str, read_text: Callable[[str], str] = _read_local,
          size_of: Callable[[str], int] = os.path.getsize) -> Tuple[bool, Optional[str]]:
  """(marked, problem): marked is whether the directory has a marker; problem is None
  when it is marked and complete, else what is still missing (in words). read_text and
  size_of read other file systems (the server passes tf.io.gfile's); they raise OSError
  (FileNotFoundError for a missing file) as the local ones do."""
  path = os.path.join(directory, MARKER)
  try:
    text = read_text(path)
  except FileNotFoundError:
    return False, f"no {MARKER} yet"
  except OSError as e:
    return True, f"cannot read {MARKER}: {e.strerror}"
  try:
    files = json.loads(text)["files"]
    sizes = {str(k): int(v) for k, v in files.items()}
  except (ValueError, KeyError, TypeError, AttributeError):
    return True, f"{MARKER} is not (yet) a complete manifest"
  missing, short = [], []
  for relative, size in sizes.items():
    try:
      actual = size_of(os.path.join(directory, *relative.split("/")))
    except OSError:
      missing.append(relative)
      continue
    if actual != size:
      short.append(f"{relative} ({actual} of {size} bytes)")
  if not missing and not short:
    return True, None
  present = len(sizes) - len(missing) - len(short)
  detail = "; ".join(part for part in (
      f"missing {', '.join(sorted(missing)[:3])}" + ("..." if len(missing) > 3 else "")
      if missing else "",
      f"incomplete {', '.join(sorted(short)[:3])}" + ("..." if len(short) > 3 else "")
      if short else "") if part)
  return True, f"{present} of {len(sizes)} files complete ({detail})"
