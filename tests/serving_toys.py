"""Tiny SavedModels with the pushed models' signatures, for serving tests that need no
pipeline run. Their outputs are simple functions of the inputs, so a test can tell what
the server received:

  retrieval  recommend_with_context(user_id, hour, device) and serving_default(user_id)
             -> item_ids [B, K]: i<(hash(user) + j) % ITEMS>, j = 0..K-1
                scores   [B, K]: hour + 100 * (device == "tv") - j / 100
             candidates_with_context(user_id, hour, device): the same, from one source
             "toy", with source_scores = scores and source_ranks = j + 1 ([B, K, 1])
  ranking    serving_default(user_id, item_id, source_scores, source_ranks, hour, device)
             -> scores [N]: item number / 1000 + (hour + 1) * 10 + (device == "tv")
                (the source inputs are checked for shape only)
  ranking_hour_only  the same without the device input
  vocab toy  serving_default(user_id) -> user_index [B] (line in assets/user_id), version
The retrieval and ranking toys answer candidate_sources() -> sources ["toy"].

copy_in_failure_order copies a version directory in slowly, in the order that once got a
half-copied vocabulary served.
"""
import os
import shutil
import time

import tensorflow as tf

K = 20
ITEMS = 30
GENRES = ("drama", "comedy", "horror", "kids", "news")


def item_table_rows():
  """Canonical items rows for the toy catalogue: genre by item number, newest year 2024
  for every seventh item."""
  return [{"item_id": f"i{n}", "genres": f"{GENRES[n % len(GENRES)]}|other",
           "title": f"Toy {n}", "year": 2024 if n % 7 == 0 else 2000} for n in range(ITEMS)]


class ToyRetrieval(tf.Module):

  def _top_k(self, user_id, hour, device):
    base = tf.strings.to_hash_bucket_fast(user_id, 1000)[:, None]
    numbers = (base + tf.range(K, dtype=tf.int64)[None, :]) % ITEMS
    item_ids = tf.strings.join(["i", tf.strings.as_string(numbers)])
    offset = tf.cast(hour, tf.float32) + 100.0 * tf.cast(device == "tv", tf.float32)
    scores = offset[:, None] - tf.range(K, dtype=tf.float32)[None, :] / 100.0
    return {"item_ids": item_ids, "scores": scores}

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.int64, name="hour"),
                                tf.TensorSpec([None], tf.string, name="device")])
  def recommend_with_context(self, user_id, hour, device):
    return self._top_k(user_id, hour, device)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  def serving_default(self, user_id):
    unknown = tf.fill(tf.shape(user_id), tf.constant(-1, tf.int64))
    return self._top_k(user_id, unknown, tf.fill(tf.shape(user_id), ""))

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.int64, name="hour"),
                                tf.TensorSpec([None], tf.string, name="device")])
  def candidates_with_context(self, user_id, hour, device):
    top = self._top_k(user_id, hour, device)
    ranks = tf.tile(tf.range(1.0, K + 1.0)[None, :, None], [tf.shape(user_id)[0], 1, 1])
    return {**top, "source_scores": top["scores"][:, :, None], "source_ranks": ranks}


@tf.function(input_signature=[])
def _sources():
  return {"sources": tf.constant(["toy"]), "primary": tf.constant("toy")}


SOURCE_SPECS = [tf.TensorSpec([None, 1], tf.float32, name="source_scores"),
                tf.TensorSpec([None, 1], tf.float32, name="source_ranks")]


class ToyRanking(tf.Module):

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.string, name="item_id")]
               + SOURCE_SPECS + [tf.TensorSpec([None], tf.int64, name="hour"),
                                 tf.TensorSpec([None], tf.string, name="device")])
  def serving_default(self, user_id, item_id, source_scores, source_ranks, hour, device):
    number = tf.strings.to_number(tf.strings.substr(item_id, 1, 10), tf.float32)
    scores = (number / 1000.0 + tf.cast(hour + 1, tf.float32) * 10.0
              + tf.cast(device == "tv", tf.float32))
    return {"scores": scores}


class ToyHourRanking(tf.Module):
  """A ranker that takes fewer context features than retrieval (hour, no device)."""

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id"),
                                tf.TensorSpec([None], tf.string, name="item_id")]
               + SOURCE_SPECS + [tf.TensorSpec([None], tf.int64, name="hour")])
  def serving_default(self, user_id, item_id, source_scores, source_ranks, hour):
    return ToyRanking().serving_default(user_id, item_id, source_scores, source_ranks, hour,
                                        tf.fill(tf.shape(hour), ""))


def save_retrieval(path: str) -> str:
  module = ToyRetrieval()
  tf.saved_model.save(module, path, signatures={
      "serving_default": module.serving_default,
      "recommend_with_context": module.recommend_with_context,
      "candidates_with_context": module.candidates_with_context,
      "candidate_sources": _sources})
  return path


def save_ranking(path: str, hour_only: bool = False) -> str:
  module = ToyHourRanking() if hour_only else ToyRanking()
  tf.saved_model.save(module, path, signatures={"serving_default": module.serving_default,
                                                "candidate_sources": _sources})
  return path


def model_base(root: str, version: int = 1) -> str:
  """<root>/retrieval/<v>/, <root>/ranking/<v>/ and <root>/ranking_hour_only/<v>/, TF
  Serving's layout."""
  save_retrieval(os.path.join(root, "retrieval", str(version)))
  save_ranking(os.path.join(root, "ranking", str(version)))
  save_ranking(os.path.join(root, "ranking_hour_only", str(version)), hour_only=True)
  return root


# --- a model with a vocabulary asset, and copies of it that arrive slowly -----------------

VOCAB_ASSET = "user_id"  # assets/user_id, as in the exported retrieval models


class VocabToy(tf.Module):
  """serving_default(user_id) -> user_index (the id's line in assets/user_id, -1 when
  unknown) and version, so a half-copied vocabulary shows as known users answered -1."""

  def __init__(self, version: int, vocab_file: str):
    super().__init__()
    initializer = tf.lookup.TextFileInitializer(
        vocab_file, tf.string, tf.lookup.TextFileIndex.WHOLE_LINE,
        tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER)
    self.table = tf.lookup.StaticHashTable(initializer, -1)
    self.version = tf.constant(version, tf.int64)

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="user_id")])
  def serving_default(self, user_id):
    return {"user_index": self.table.lookup(user_id),
            "version": tf.fill(tf.shape(user_id), self.version)}


def vocab_users(count: int = 2000):
  return [f"user{n:05d}" for n in range(count)]


def save_vocab_toy(path: str, version: int, users=None) -> str:
  """A SavedModel whose assets/user_id lists `users` (default vocab_users())."""
  scratch = path + ".vocab"
  os.makedirs(scratch, exist_ok=True)
  vocab = os.path.join(scratch, VOCAB_ASSET)
  with open(vocab, "w") as f:
    f.write("".join(u + "\n" for u in (users or vocab_users())))
  module = VocabToy(version, vocab)
  tf.saved_model.save(module, path, signatures={"serving_default": module.serving_default})
  os.remove(vocab)
  os.rmdir(scratch)
  return path


def copy_in_failure_order(source: str, target: str, pause: float, marker_first: bool = True,
                          on_step=None) -> None:
  """Copies a version directory into place file by file, as a hand copy does, pausing
  `pause` seconds between steps: the completion marker first (the worst case for a copy
  that includes it), then every other file, then assets/user_id written up to a line
  boundary, a pause, and the rest of it. `on_step(description)` is called after each
  step."""
  from recsys_tfx.schema import push_manifest
  files = []
  for root, _, names in os.walk(source):
    files += [os.path.relpath(os.path.join(root, n), source) for n in sorted(names)]
  vocab = os.path.join("assets", VOCAB_ASSET)
  marker = [push_manifest.MARKER] if push_manifest.MARKER in files else []
  rest = [f for f in sorted(files) if f != vocab and f not in marker]
  order = (marker if marker_first else []) + rest

  def step(description):
    if on_step:
      on_step(description)
    time.sleep(pause)

  os.makedirs(target)
  for relative in order:
    os.makedirs(os.path.dirname(os.path.join(target, relative)), exist_ok=True)
    shutil.copy2(os.path.join(source, relative), os.path.join(target, relative))
    step(relative)
  with open(os.path.join(source, vocab), "rb") as f:
    data = f.read()
  cut = data.index(b"\n", len(data) // 2) + 1  # a line boundary half way
  os.makedirs(os.path.join(target, "assets"), exist_ok=True)
  with open(os.path.join(target, vocab), "wb") as f:
    f.write(data[:cut])
    f.flush()
    lines = data[:cut].count(b"\n")
    step(f"{vocab} up to line {lines}")
    f.write(data[cut:])
  if not marker_first and marker:
    step(vocab)
    shutil.copy2(os.path.join(source, marker[0]), os.path.join(target, marker[0]))
  if on_step:
    on_step("complete")


# --- hostile requests and the server's memory --------------------------------------------

def declared_tensor(dims, values=(b"u",), dtype=None, content=b""):
  """A TensorProto whose declared shape (dims) need not match what it carries: string
  `values`, or raw `content` for a numeric dtype."""
  from tensorflow.core.framework import tensor_pb2, types_pb2
  dtype = types_pb2.DT_STRING if dtype is None else dtype
  proto = tensor_pb2.TensorProto(dtype=dtype, tensor_content=content)
  for d in dims:
    proto.tensor_shape.dim.add(size=d)
  if dtype == types_pb2.DT_STRING:
    proto.string_val.extend(values)
  return proto


def status_kib(pid: int, field: str) -> int:
  """A memory figure of a process, in KiB: VmRSS (now) or VmHWM (peak since the start or
  since `echo 5 > /proc/<pid>/clear_refs`)."""
  with open(f"/proc/{pid}/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1])
  raise RuntimeError(f"no {field} in /proc/{pid}/status")
