"""Embedding models, trained with TensorFlow on the fit interactions.

  mf        matrix factorisation: user and item embeddings, score = their dot product.
            loss="bpr": Bayesian Personalized Ranking (Rendle et al., UAI 2009), one
            uniformly sampled negative item per positive. loss="softmax": in-batch
            softmax, the batch's other items are the negatives, with the logQ correction
            for their sampling probability (Yi et al., RecSys 2019).
  lightgcn  LightGCN (He et al., SIGIR 2020): the same embeddings propagated over the
            symmetric-normalised user-item graph D^-1/2 A D^-1/2, final embedding = mean
            of the layer outputs, L2 on the layer-0 embeddings; BPR loss (the paper's,
            the default) or the same in-batch softmax as mf.

Both score by inner product, so a ScaNN / MIPS index over item_embeddings() serves them.
`loss_history` keeps the mean training loss of each epoch.
"""
from __future__ import annotations

import time

import numpy as np

import tensorflow as tf

from recsys_tfx.trainer.models.protocol import Recommender, Split


def _unique_pairs(split: Split) -> tuple:
  """(users, items) of the fit interactions, each pair once."""
  pairs = np.unique(np.stack([split.fit_users, split.fit_items], axis=1), axis=0)
  return pairs[:, 0], pairs[:, 1]


LOSSES = ("bpr", "softmax")


class _EmbeddingModel(Recommender):
  """Shared by MF and LightGCN: seeded init, the epoch loop, the loss, embeddings and
  scoring."""

  def __init__(self, dim: int, epochs: int, batch_size: int, learning_rate: float,
               l2: float, verbose: bool, loss: str = "bpr"):
    if loss not in LOSSES:
      raise ValueError(f"loss must be 'bpr' or 'softmax', not {loss!r}")
    self.loss = loss
    self.dim = dim
    self.epochs = epochs
    self.batch_size = batch_size
    self.learning_rate = learning_rate
    self.l2 = l2
    self.verbose = verbose
    self.loss_history: list = []

  def _init(self, split: Split, seed: int) -> np.random.Generator:
    tf.random.set_seed(seed)
    rng = np.random.default_rng(seed)
    init = lambda n: tf.Variable(rng.normal(0, 0.1, (n, self.dim)).astype(np.float32))
    self.user_table, self.item_table = init(split.n_users), init(split.n_items)
    self.optimizer = tf.keras.optimizers.Adam(self.learning_rate)
    return rng

  def _train(self, split: Split, rng: np.random.Generator, step,
             negatives_per_positive: int = 1) -> None:
    """Runs `step(users, items, negatives)` over shuffled batches of the unique pairs;
    negatives is [batch] for one per positive, else [batch, negatives_per_positive]."""
    users, items = _unique_pairs(split)
    self.loss_history = []
    shape = (len(users),) if negatives_per_positive == 1 else (len(users), negatives_per_positive)
    for epoch in range(self.epochs):
      start = time.time()
      order = rng.permutation(len(users))
      negatives = rng.integers(0, split.n_items, shape)  # uniform; a rare hit is noise
      losses = []
      for b in range(0, len(order), self.batch_size):
        batch = order[b:b + self.batch_size]
        losses.append(float(step(tf.constant(users[batch]), tf.constant(items[batch]),
                                 tf.constant(negatives[batch]))))
      self.loss_history.append(float(np.mean(losses)))
      if self.verbose:
        print(f"{self.name} epoch {epoch + 1}/{self.epochs} loss {self.loss_history[-1]:.4f} "
              f"({time.time() - start:.1f}s)", flush=True)

  def _log_q(self, split: Split) -> tf.Tensor:
    """log of each item's share of the fit interactions (+1 smoothing): how likely the
    in-batch softmax is to draw it as a negative."""
    counts = np.bincount(split.fit_items, minlength=split.n_items) + 1.0
    return tf.constant(np.log(counts / counts.sum()), tf.float32)

  def _ranking_loss(self, u, i, j, items, log_q) -> tf.Tensor:
    """BPR on (user, positive, sampled negative) rows, or in-batch softmax: row r's
    positive is column r, the other columns are negatives drawn with the batch's
    popularity bias, which subtracting log q(item) undoes."""
    if self.loss == "bpr":
      return -tf.reduce_mean(tf.math.log_sigmoid(tf.reduce_sum(u * (i - j), axis=1)))
    logits = tf.matmul(u, i, transpose_b=True) - tf.gather(log_q, items)[None, :]
    same = tf.equal(items[:, None], items[None, :]) & ~tf.eye(tf.size(items), dtype=tf.bool)
    logits = tf.where(same, -1e9, logits)  # a repeat of the positive is not a negative
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
        tf.range(tf.size(items)), logits))

  def _squared_norms(self, *embeddings) -> tf.Tensor:
    """L2 penalty of the rows the loss used (the negatives' only under BPR)."""
    used = embeddings if self.loss == "bpr" else embeddings[:2]
    return tf.add_n([tf.reduce_sum(e * e) for e in used])

  def user_embeddings(self) -> np.ndarray:
    return self._users

  def item_embeddings(self) -> np.ndarray:
    return self._items

  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    return (self._users[split.test_users[rows]] @ self._items.T).astype(np.float32)

  def num_parameters(self) -> int:
    return int(self.user_table.shape[0] + self.item_table.shape[0]) * self.dim


class MatrixFactorization(_EmbeddingModel):
  """Dot-product matrix factorisation with a BPR or in-batch softmax loss."""

  name = "mf"

  def __init__(self, dim: int = 64, loss: str = "softmax", epochs: int = 30,
               batch_size: int = 1024, learning_rate: float = 0.005, l2: float = 1e-3,
               verbose: bool = False):
    super().__init__(dim, epochs, batch_size, learning_rate, l2, verbose, loss)

  def fit(self, split: Split, seed: int = 0) -> None:
    rng = self._init(split, seed)
    log_q = self._log_q(split)
    variables = [self.user_table, self.item_table]

    @tf.function
    def step(users, items, negatives):
      with tf.GradientTape() as tape:
        u = tf.gather(self.user_table, users)
        i = tf.gather(self.item_table, items)
        j = tf.gather(self.item_table, negatives)
        loss = self._ranking_loss(u, i, j, items, log_q)
        reg = self._squared_norms(u, i, j)
        total = loss + self.l2 * reg / tf.cast(tf.size(users), tf.float32)
      self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
      return loss

    self._train(split, rng, step)
    self._users, self._items = self.user_table.numpy(), self.item_table.numpy()


class LightGCN(_EmbeddingModel):
  """Layer-0 embeddings propagated `layers` times over the normalised bipartite graph;
  the final embedding is the mean of the layer-0..L outputs, trained with BPR (or
  loss="softmax")."""

  name = "lightgcn"

  def __init__(self, dim: int = 64, layers: int = 2, epochs: int = 50,
               batch_size: int = 2048, learning_rate: float = 0.005, l2: float = 1e-4,
               loss: str = "bpr", verbose: bool = False):
    super().__init__(dim, epochs, batch_size, learning_rate, l2, verbose, loss)
    self.layers = layers

  def _graph(self, split: Split) -> tf.SparseTensor:
    """D^-1/2 A D^-1/2 for A = [[0, R], [R^T, 0]], users first, then items."""
    users, items = _unique_pairs(split)
    items = items + split.n_users
    degree = np.bincount(np.concatenate([users, items]), minlength=split.n_users + split.n_items)
    scale = 1.0 / np.sqrt(np.maximum(degree, 1))  # isolated nodes just stay at layer 0
    weights = (scale[users] * scale[items]).astype(np.float32)
    n = split.n_users + split.n_items
    graph = tf.SparseTensor(np.stack([np.concatenate([users, items]),
                                      np.concatenate([items, users])], axis=1),
                            np.concatenate([weights, weights]), (n, n))
    return tf.sparse.reorder(graph)

  def _propagate(self, graph: tf.SparseTensor) -> tf.Tensor:
    layer = tf.concat([self.user_table, self.item_table], axis=0)
    total = layer
    for _ in range(self.layers):
      layer = tf.sparse.sparse_dense_matmul(graph, layer)
      total += layer
    return total / (self.layers + 1)

  def fit(self, split: Split, seed: int = 0) -> None:
    rng = self._init(split, seed)
    graph = self._graph(split)
    log_q = self._log_q(split)
    n_users = split.n_users
    variables = [self.user_table, self.item_table]

    @tf.function
    def step(users, items, negatives):
      with tf.GradientTape() as tape:
        final = self._propagate(graph)  # the whole graph: cheap at leaderboard sizes
        u = tf.gather(final, users)
        i = tf.gather(final, items + n_users)
        j = tf.gather(final, negatives + n_users)
        loss = self._ranking_loss(u, i, j, items, log_q)
        reg = self._squared_norms(tf.gather(self.user_table, users),
                                  tf.gather(self.item_table, items),
                                  tf.gather(self.item_table, negatives))
        total = loss + self.l2 * reg / tf.cast(tf.size(users), tf.float32)
      self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
      return loss

    self._train(split, rng, step)
    final = self._propagate(graph).numpy()
    self._users, self._items = final[:n_users], final[n_users:]
