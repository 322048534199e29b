"""NeuMF (He et al., WWW 2017), written once: NeuMFHead joins GMF (the element-wise
product of a user and an item vector) and an MLP over other inputs into one logit. The
ranking architecture `ncf` (rankers.py) puts it over Transform's features; NCF below
puts it over id embeddings alone, as a Recommender, so the claim that it beats matrix
factorisation (and Rendle et al., RecSys 2020, that a tuned MF beats it) can be checked
on the user's own data and split (`recsys benchmark --models ...,ncf`).

NCF: GMF over one pair of id embeddings and the MLP over the concatenation of another
pair, joined by the head; trained with
binary cross-entropy on each observed pair and `negatives` uniformly sampled items, with
L2 on the embeddings it touches. It is sensitive to that L2 (HR@10, full catalogue,
split seed 0):
  demo synthetic world (2,000 users x 40):     popularity 0.117; l2 0 -> 0.127, 1e-3 ->
                                               0.127, 1e-2 -> 0.149
  1,000 users x 30, data seeds 0 / 1 / 2:      popularity 0.132 / 0.163 / 0.138;
                                               l2 0 -> 0.164 / 0.179 / 0.164,
                                               l2 1e-2 -> 0.145 / 0.161 / 0.135
  ml-latest-small (l2 1e-2):                   popularity 0.041, mf 0.059, ncf 0.056
so no one setting beats popularity everywhere; 1e-2 is the default, and ncf is not in
the leaderboard's default list.
Its score is not an inner product, so no ScaNN index can serve it: scoring runs the
network over every (user, item) pair. In the pipeline it is a ranking architecture
(ranking.architecture: ncf), not a retrieval model.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import tensorflow as tf

from recsys_tfx.trainer.models.factorization import _EmbeddingModel
from recsys_tfx.trainer.models.protocol import Split

SCORE_PAIRS = 1 << 20  # (user, item) pairs per scoring call


class MLP(tf.keras.layers.Layer):
  """ReLU layers of `units` (none: the identity)."""

  def __init__(self, units: Sequence[int], **kwargs):
    super().__init__(**kwargs)
    self._layers = [tf.keras.layers.Dense(u, activation="relu") for u in units]

  def call(self, x: tf.Tensor) -> tf.Tensor:
    for layer in self._layers:
      x = layer(x)
    return x


class NeuMFHead(tf.keras.layers.Layer):
  """logit = w . [user * item, MLP(mlp_input)] + b, [batch, 1]."""

  def __init__(self, hidden_units: Sequence[int], **kwargs):
    super().__init__(**kwargs)
    self._mlp = MLP(hidden_units, name="mlp")
    self._logit = tf.keras.layers.Dense(1, name="logit")

  def call(self, user: tf.Tensor, item: tf.Tensor, mlp_input: tf.Tensor) -> tf.Tensor:
    return self._logit(tf.concat([user * item, self._mlp(mlp_input)], axis=1))


class NCF(_EmbeddingModel):
  """NeuMF: user_table / item_table are GMF's embeddings; the MLP has its own pair."""

  name = "ncf"

  def __init__(self, dim: int = 32, hidden_units: Sequence[int] = (64, 32, 16),
               negatives: int = 4, epochs: int = 20, batch_size: int = 1024,
               learning_rate: float = 0.001, l2: float = 0.01, verbose: bool = False):
    super().__init__(dim, epochs, batch_size, learning_rate, l2, verbose)
    self.loss = "bce"  # its own (below), not the shared BPR / softmax
    self.hidden_units = tuple(hidden_units)
    self.negatives = negatives

  def fit(self, split: Split, seed: int = 0) -> None:
    rng = self._init(split, seed)
    init = lambda n: tf.Variable(rng.normal(0, 0.1, (n, self.dim)).astype(np.float32))
    self.mlp_users, self.mlp_items = init(split.n_users), init(split.n_items)
    self.head = NeuMFHead(self.hidden_units)
    self._logits(tf.zeros([1], tf.int64), tf.zeros([1], tf.int64))  # builds the layers
    variables = [self.user_table, self.item_table, self.mlp_users, self.mlp_items,
                 *self.head.trainable_variables]
    k = self.negatives

    @tf.function
    def step(users, items, negatives):
      pair_users = tf.repeat(users, k + 1)
      pair_items = tf.reshape(tf.concat([items[:, None], tf.reshape(negatives, [-1, k])], 1), [-1])
      labels = tf.reshape(tf.one_hot(tf.zeros_like(users, tf.int32), k + 1), [-1])
      with tf.GradientTape() as tape:
        logits = self._logits(pair_users, pair_items)
        loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels, logits))
        reg = sum(tf.reduce_sum(tf.square(tf.gather(table, ids))) for table, ids in (
            (self.user_table, pair_users), (self.item_table, pair_items),
            (self.mlp_users, pair_users), (self.mlp_items, pair_items)))
        total = loss + self.l2 * reg / tf.cast(tf.size(pair_users), tf.float32)
      self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
      return loss

    self._train(split, rng, step, negatives_per_positive=k)
    self._score_pairs = tf.function(self._logits)

  def _logits(self, users: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
    mlp_input = tf.concat([tf.gather(self.mlp_users, users), tf.gather(self.mlp_items, items)],
                          axis=1)
    return tf.squeeze(self.head(tf.gather(self.user_table, users),
                                tf.gather(self.item_table, items), mlp_input), axis=1)

  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    users = split.test_users[rows]
    out = np.empty((len(users), split.n_items), np.float32)
    per_call = max(1, SCORE_PAIRS // split.n_items)
    items = np.tile(np.arange(split.n_items), per_call)
    for start in range(0, len(users), per_call):
      chunk = users[start:start + per_call]
      pair_users = np.repeat(chunk, split.n_items)
      logits = self._score_pairs(tf.constant(pair_users), tf.constant(items[:len(pair_users)]))
      out[start:start + len(chunk)] = logits.numpy().reshape(len(chunk), split.n_items)
    return out

  def user_embeddings(self) -> np.ndarray:
    raise NotImplementedError("NCF scores through its network, not by an inner product")

  item_embeddings = user_embeddings

  def num_parameters(self) -> int:
    tables = 2 * (int(self.user_table.shape[0]) + int(self.item_table.shape[0])) * self.dim
    return tables + sum(int(np.prod(v.shape)) for v in self.head.trainable_variables)
