"""Trains a ranker on candidate lists (trainer/candidate_lists.py) for the job it does in
serving: re-ordering one user's candidates.

Every list's rows go through the exported module's own input path (RankingModule
.features: item and user feature lookups, then the Transform graph), the very path a
serving request takes, so training and serving cannot disagree on a feature.

  listwise   softmax cross-entropy over each list: the held-back item against the other
             candidates of its list (the default)
  pointwise  sigmoid cross-entropy per candidate: 1 for the held-back item, 0 for the rest

After each epoch the ranker orders the validation lists (each user's latest held-back
interaction); the weights of the epoch with the best NDCG@10 are kept.
"""
import time
from typing import Dict, List

import numpy as np
import tensorflow as tf

from recsys_tfx.trainer import metrics
from recsys_tfx.trainer.candidate_lists import Lists


def source_stats(lists: Lists) -> np.ndarray:
  """[2, sources]: mean and std of each source's scores over the lists' real candidates."""
  valid = lists.item_ids != ""
  scores = lists.source_scores[valid]
  if not len(scores):
    return np.stack([np.zeros(lists.source_scores.shape[2]),
                     np.ones(lists.source_scores.shape[2])]).astype(np.float32)
  return np.stack([scores.mean(axis=0), scores.std(axis=0)]).astype(np.float32)


class ListTrainer:

  def __init__(self, module, model, loss: str, learning_rate: float,
               context_dtypes: Dict[str, tf.DType], log=print):
    self.module, self.model, self.loss = module, model, loss
    self.context_dtypes = context_dtypes
    self.optimizer = tf.keras.optimizers.Adam(learning_rate)
    self.log = log
    width = len(module.source_names)
    specs = [tf.TensorSpec([None], tf.string), tf.TensorSpec([None], tf.string),
             tf.TensorSpec([None, width], tf.float32), tf.TensorSpec([None, width], tf.float32),
             tf.TensorSpec([None], tf.bool), tf.TensorSpec([None], tf.int64)]
    context_specs = [tf.TensorSpec([None], dtype) for dtype in context_dtypes.values()]
    self._step = tf.function(self._train_step, input_signature=specs + context_specs)
    self._logits = tf.function(self._forward, input_signature=specs[:5] + context_specs)

  def _rows_to_logits(self, user_id, item_id, scores, ranks, valid, context, training):
    del valid  # the model scores padding rows too; the loss and the metrics mask them
    features = self.module.features(user_id, item_id, dict(zip(self.context_dtypes, context)),
                                    scores, ranks)
    return self.model(features, training=training)

  def _forward(self, user_id, item_id, scores, ranks, valid, *context):
    return self._rows_to_logits(user_id, item_id, scores, ranks, valid, context, False)

  def _train_step(self, user_id, item_id, scores, ranks, valid, positive, *context):
    with tf.GradientTape() as tape:
      logits = self._rows_to_logits(user_id, item_id, scores, ranks, valid, context, True)
      loss = self._loss(logits, valid, positive)
    variables = self.model.trainable_variables
    self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  def _loss(self, logits, valid, positive):
    per_list = tf.reshape(logits, [tf.shape(positive)[0], -1])
    mask = tf.reshape(valid, tf.shape(per_list))
    labels = tf.one_hot(positive, tf.shape(per_list)[1])
    if self.loss == "listwise":
      masked = tf.where(mask, per_list, -1e9)
      return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels, masked))
    per_row = tf.nn.sigmoid_cross_entropy_with_logits(labels, per_list)
    return tf.reduce_sum(tf.where(mask, per_row, 0.0)) / tf.reduce_sum(tf.cast(mask, tf.float32))

  def _inputs(self, lists: Lists, index: np.ndarray):
    """The rows of lists[index], flattened: every tensor the step functions take."""
    length = lists.item_ids.shape[1]
    width = lists.source_scores.shape[2]
    rows = len(index) * length
    context = [tf.constant(np.repeat(lists.context[name].to_numpy()[index], length), dtype)
               for name, dtype in self.context_dtypes.items()]
    return ([tf.constant(np.repeat(lists.user_ids[index].astype(str), length)),
             tf.constant(lists.item_ids[index].reshape(rows).astype(str)),
             tf.constant(lists.source_scores[index].reshape(rows, width)),
             tf.constant(lists.source_ranks[index].reshape(rows, width)),
             tf.constant(lists.item_ids[index].reshape(rows) != "")],
            tf.constant(lists.positive[index]), context)

  def scores(self, lists: Lists, batch: int = 64) -> np.ndarray:
    """float32 [lists, length]: the ranker's logits, -inf on padding."""
    out = []
    for start in range(0, len(lists), batch):
      index = np.arange(start, min(start + batch, len(lists)))
      row_inputs, _, context = self._inputs(lists, index)
      logits = self._logits(*row_inputs, *context).numpy().reshape(len(index), -1)
      out.append(np.where(lists.item_ids[index] != "", logits, -np.inf))
    return np.concatenate(out) if out else np.zeros((0, lists.item_ids.shape[1]), np.float32)

  def evaluate(self, lists: Lists) -> Dict[str, float]:
    return order_metrics(self.scores(lists), lists.positive)

  def fit(self, train: Lists, validation: Lists, epochs: int, batch_size: int, seed: int,
          steps=None, on_epoch_end=None) -> Dict[str, List[float]]:
    """Trains, keeping the best validation epoch's weights; returns the history.
    `on_epoch_end(epoch, {"loss": ..., "val_ndcg@10": ...})`, when given, is called after
    each epoch (the ranking trainer logs to TensorBoard with it)."""
    rng = np.random.default_rng(seed)
    history: Dict[str, List[float]] = {"loss": [], "val_ndcg@10": []}
    best, best_weights = -1.0, None
    if steps == 0 or not len(train):
      row_inputs, positive, context = self._inputs(train if len(train) else validation,
                                                   np.arange(min(1, len(train) or 1)))
      self._logits(*row_inputs, *context)  # builds the weights
      self.log("RankingTrainer: no training (train_steps=0 or no lists): untrained ranker")
      return history
    done = 0
    for epoch in range(1 if steps else epochs):
      started, losses = time.time(), []
      order = rng.permutation(len(train))
      batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
      if steps:
        batches = [batches[i % len(batches)] for i in range(int(steps))]
      for index in batches:
        row_inputs, positive, context = self._inputs(train, index)
        losses.append(float(self._step(*row_inputs, positive, *context)))
        done += 1
      val = self.evaluate(validation)["ndcg@10"] if len(validation) else float("nan")
      history["loss"].append(float(np.mean(losses)))
      history["val_ndcg@10"].append(val)
      if on_epoch_end is not None:
        on_epoch_end(epoch, {name: values[-1] for name, values in history.items()})
      self.log(f"RankingTrainer: epoch {epoch + 1}: loss {history['loss'][-1]:.4f}, "
               f"validation lists NDCG@10 {val:.4f} ({time.time() - started:.0f}s)")
      if not np.isnan(val) and val > best:
        best, best_weights = val, self.model.get_weights()
    if best_weights is not None:
      self.model.set_weights(best_weights)
    return history


def order_metrics(scores: np.ndarray, positive: np.ndarray) -> Dict[str, float]:
  """HR/NDCG@10 of ordering each list by `scores` [lists, length] (-inf: not a candidate)."""
  if not len(scores):
    return {"hit_rate@10": 0.0, "ndcg@10": 0.0}
  moved = scores.copy()
  rows = np.arange(len(moved))
  moved[:, 0], moved[rows, positive] = scores[rows, positive], scores[:, 0]
  moved = np.where(np.isneginf(moved), np.nan, moved)  # padding never ranks above
  return metrics.summarize(metrics.rank_in_list(moved), ks=(10,))


def source_orders(lists: Lists) -> Dict[str, Dict[str, float]]:
  """Each source's own order of the lists (its score; candidates it did not retrieve
  after those it did): what the ranker has to beat."""
  out = {}
  for s in range(lists.source_scores.shape[2]):
    retrieved = lists.source_ranks[:, :, s] > 0
    score = np.where(retrieved, lists.source_scores[:, :, s], -1e30)
    score = np.where(lists.item_ids != "", score, -np.inf)
    out[s] = order_metrics(score, lists.positive)
  return out

