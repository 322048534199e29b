"""The model base as the server reads it, through tf.io.gfile: local paths and bucket URIs
(gs://, s3:// with tensorflow-io's file systems, TF's in-memory ram://) alike, so
`recsys serve --model-base gs://bucket/serving_models` serves what the Kubeflow pusher
writes there, as TF Serving's --model_base_path does.

TensorFlow reports file-system errors as tf.errors (NotFoundError, ...); here they
become the OSErrors the rest of the server already handles (FileNotFoundError for
NotFoundError), so callers do not care which file system they read.
"""
import errno
import functools
import os
from typing import List, Optional, Tuple

import tensorflow as tf

from recsys_tfx.schema import push_manifest

gfile = tf.io.gfile


def _as_os_error(path: str, error: tf.errors.OpError) -> OSError:
  if isinstance(error, tf.errors.NotFoundError):
    return FileNotFoundError(errno.ENOENT, error.message or "not found", path)
  return OSError(errno.EIO, error.message, path)


def _os_errors(function):
  @functools.wraps(function)
  def wrapped(path: str, *args):
    try:
      return function(path, *args)
    except tf.errors.OpError as e:
      raise _as_os_error(path, e) from None
  return wrapped


def join(*parts: str) -> str:
  return os.path.join(*parts)  # "/" on every file system TensorFlow reads


@_os_errors
def listdir(path: str) -> List[str]:
  # Bucket listings name sub-directories with a trailing "/".
  return [name.rstrip("/") for name in gfile.listdir(path)]


def isdir(path: str) -> bool:
  try:
    return gfile.isdir(path)
  except tf.errors.OpError:
    return False


def exists(path: str) -> bool:
  try:
    return gfile.exists(path)
  except tf.errors.OpError:
    return False


@_os_errors
def read_bytes(path: str) -> bytes:
  with gfile.GFile(path, "rb") as f:
    return f.read()


@_os_errors
def read_text(path: str) -> str:
  with gfile.GFile(path, "r") as f:
    return f.read()


@_os_errors
def size(path: str) -> int:
  return gfile.stat(path).length


def fingerprint(path: str) -> Tuple:
  """Names, sizes and modification times of a version's files: changes when it is
  rewritten. (TF's ram:// file system reports no modification times; sizes still tell.)"""
  files = []
  try:
    walked = list(gfile.walk(path))
  except tf.errors.OpError:
    return ()
  for root, _, names in walked:
    for name in names:
      full = join(root, name)
      try:
        stat = gfile.stat(full)
      except tf.errors.OpError:
        continue  # removed since it was listed
      files.append((full[len(path):].lstrip("/"), stat.length, stat.mtime_nsec))
  return tuple(sorted(files))


def check_marker(version_dir: str) -> Tuple[bool, Optional[str]]:
  """push_manifest.check on any file system TensorFlow reads."""
  return push_manifest.check(version_dir, read_text=read_text, size_of=size)
