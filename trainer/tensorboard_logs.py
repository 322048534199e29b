"""TensorBoard logs of a Trainer run, under the Trainer's fn_args.model_run_dir (TFX's
convention: the ModelRun artifact holds what TensorBoard reads), one folder per model:

  <model_run_dir>/<model>/train        loss per epoch (Keras: epoch_loss)
  <model_run_dir>/<model>/validation   the validation metrics per epoch (Keras: epoch_loss
                                       on the eval split; a ranker: ndcg@10 of its
                                       validation lists), and the eval split's
                                       selection metrics once, after training
  <model_run_dir>/two_tower/embeddings the row norms of the user and item id embedding
                                       tables per epoch (histograms, and mean-norm scalars)

A model fitted in closed form (popularity, itemknn, ease, transitions) has no epochs: it
logs its eval metrics only. `tensorboard --logdir <model_run_dir>` shows every model.
"""
import os
from typing import Dict, Iterable, List, Mapping

import numpy as np
import tensorflow as tf

from recsys_tfx.schema import features as feats

TRAIN, VALIDATION, EMBEDDINGS = "train", "validation", "embeddings"
EMBEDDING_NORM_FEATURES = (feats.USER_ID, feats.ITEM_ID)


def model_log_dir(model_run_dir: str, model: str) -> str:
  return os.path.join(model_run_dir, model)


def keras_callbacks(log_dir: str, model) -> List[tf.keras.callbacks.Callback]:
  """Keras' own loss and validation logging, plus the embedding norms per epoch."""
  return [tf.keras.callbacks.TensorBoard(log_dir=log_dir, write_graph=False,
                                         update_freq="epoch", profile_batch=0),
          EmbeddingNorms(log_dir, model)]


class EmbeddingNorms(tf.keras.callbacks.Callback):
  """After each epoch: the norms of the user and item id embedding rows (how far training
  moves them; rows that stay near their initial norm are ids training rarely saw)."""

  def __init__(self, log_dir: str, model):
    super().__init__()
    self._writer = tf.summary.create_file_writer(os.path.join(log_dir, EMBEDDINGS))
    self._model = model

  def on_epoch_end(self, epoch, logs=None):
    write_embedding_norms(self._writer, self._model, epoch)

  def on_train_end(self, logs=None):
    self._writer.flush()


def id_embedding_tables(model, names: Iterable[str] = EMBEDDING_NORM_FEATURES
                        ) -> Dict[str, tf.Variable]:
  """feature name -> its embedding table (the Embedding layer named <name>_embedding)."""
  tables = {}
  for variable in model.variables:
    for name in names:
      if f"{name}_embedding/" in variable.name and name not in tables:
        tables[name] = variable
  return tables


def write_embedding_norms(writer, model, step: int) -> None:
  with writer.as_default():
    for name, table in id_embedding_tables(model).items():
      norms = tf.norm(table, axis=1)
      tf.summary.histogram(f"{name}_embedding_norm", norms, step=step)
      tf.summary.scalar(f"{name}_embedding_mean_norm", tf.reduce_mean(norms), step=step)
  writer.flush()


class EpochScalars:
  """Scalars per epoch for a training loop of our own (the ranker's ListTrainer, the
  models of trainer/models/): `write(epoch, {"loss": ...})`, to <log_dir>/<run>."""

  def __init__(self, log_dir: str, run: str):
    self._writer = tf.summary.create_file_writer(os.path.join(log_dir, run))

  def write(self, step: int, values: Mapping[str, float]) -> None:
    with self._writer.as_default():
      for name, value in values.items():
        if value is not None and np.isfinite(value):
          tf.summary.scalar(name, float(value), step=step)
    self._writer.flush()


def write_history(log_dir: str, run: str, history: Mapping[str, List[float]]) -> None:
  """A finished loop's per-epoch values ({"loss": [epoch 0, epoch 1, ...]})."""
  writer = EpochScalars(log_dir, run)
  for name, values in history.items():
    for epoch, value in enumerate(values):
      writer.write(epoch, {name: value})


def write_eval_metrics(log_dir: str, metrics: Mapping[str, object], step: int) -> None:
  """The eval split's metrics after training (the ones the primary model is chosen by)."""
  EpochScalars(log_dir, VALIDATION).write(step, {
      f"eval_{name}": value for name, value in metrics.items()
      if isinstance(value, (int, float)) and not isinstance(value, bool)})
