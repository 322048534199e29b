"""Non-neural baselines: the numbers a deep model has to beat.

  popularity   most-interacted items first; the floor every model must clear.
  itemknn      item-based collaborative filtering with cosine similarity on the binary
               user-item matrix (Sarwar et al., WWW 2001; Deshpande & Karypis, TOIS 2004
               for the top-k neighbourhood and the sum-over-history score).
  ease         Embarrassingly Shallow Autoencoder (Steck, WWW 2019): a closed-form
               item-item linear model, B = I - P / diag(P), P = (X^T X + lambda I)^-1.
  transitions  a first-order Markov chain over each user's time-ordered items (the item
               transition part of FPMC, Rendle et al., WWW 2010), extended to the last
               few items with weights 1, 1/2, 1/3, ...

All fit on split.fit_* / split.sequences only; none reads split.test_items.

itemknn, ease and transitions score a user as `query @ item_item_matrix()`, where the
query is a row over items built from the user's history (`query_window`: None = each
history item once, k = the last k items weighted 1, 1/2, ...), plus `tie_breaker` x
normalised popularity, so ties, and users with no usable history, get a popularity
ranking. The pipeline exports them in exactly this form (trainer/retrieval_models.py).
"""
from __future__ import annotations

import abc

import numpy as np
import scipy.linalg
import scipy.sparse as sp

from recsys_tfx.trainer.models.protocol import Recommender, Split


def interaction_matrix(split: Split, dtype=np.float32) -> sp.csr_matrix:
  """Binary [n_users, n_items] matrix of the fit interactions (repeats count once)."""
  x = sp.csr_matrix((np.ones(len(split.fit_users), dtype), (split.fit_users, split.fit_items)),
                    shape=(split.n_users, split.n_items))
  x.data[:] = 1  # duplicates were summed by the constructor
  return x


def history_matrix(split: Split, users: np.ndarray, dtype=np.float32) -> sp.csr_matrix:
  """Binary [len(users), n_items] matrix of the given users' fit histories."""
  histories = split.histories(users)
  rows = np.repeat(np.arange(len(users)), [len(h) for h in histories])
  cols = np.concatenate(histories) if len(histories) else np.empty(0, np.int64)
  x = sp.csr_matrix((np.ones(len(cols), dtype), (rows, cols)),
                    shape=(len(users), split.n_items))
  x.data[:] = 1
  return x


def normalised_popularity(split: Split) -> np.ndarray:
  counts = np.bincount(split.fit_items, minlength=split.n_items).astype(np.float32)
  return counts / max(counts.max(), 1.0)


class ItemItemModel(Recommender):
  """A model whose scores are a history row times one item-item matrix (see above)."""

  query_window = None  # None: every history item once; k: the last k, weighted 1/d

  @abc.abstractmethod
  def item_item_matrix(self) -> np.ndarray:
    """Dense float32 [n_items, n_items]: score of item j for history item i at [i, j]."""

  def _with_tie_breaker(self, scores) -> np.ndarray:
    return np.asarray(scores, dtype=np.float32) + self.tie_breaker * self.popularity[None, :]


class Popularity(Recommender):
  """Scores every item by its number of fit interactions, the same list for everyone."""

  name = "popularity"

  def fit(self, split: Split, seed: int = 0) -> None:
    self.counts = np.bincount(split.fit_items, minlength=split.n_items).astype(np.float32)

  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    return np.tile(self.counts, (len(rows), 1))

  def num_parameters(self) -> int:
    return len(self.counts)


class ItemKNN(ItemItemModel):
  """Item-item cosine similarity, top `neighbours` per item; a user's score for item j is
  the sum of sim(i, j) over the items i in their history."""

  name = "itemknn"

  def __init__(self, neighbours: int = 100, block: int = 1024, tie_breaker: float = 1e-6):
    self.neighbours = neighbours
    self.block = block  # items per dense block of X^T X, bounds memory to block x n_items
    self.tie_breaker = tie_breaker

  def fit(self, split: Split, seed: int = 0) -> None:
    x = interaction_matrix(split)
    xt = x.T.tocsr()
    norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())
    inv_norms = np.where(norms > 0, 1.0 / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
    n, k = split.n_items, min(self.neighbours, split.n_items - 1)
    rows, cols, vals = [], [], []
    for start in range(0, n, self.block):
      stop = min(start + self.block, n)
      co = (xt[start:stop] @ x).toarray()  # co-occurrence counts [block, n_items]
      sim = co * inv_norms[start:stop, None] * inv_norms[None, :]
      sim[np.arange(stop - start), np.arange(start, stop)] = 0  # an item is not its own neighbour
      top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
      top_sim = np.take_along_axis(sim, top, axis=1)
      keep = top_sim > 0
      rows.append(np.repeat(np.arange(start, stop), k).reshape(-1, k)[keep])
      cols.append(top[keep])
      vals.append(top_sim[keep])
    self.similarity = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    self.popularity = normalised_popularity(split)

  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    history = history_matrix(split, split.test_users[rows])
    return self._with_tie_breaker((history @ self.similarity).todense())

  def item_item_matrix(self) -> np.ndarray:
    return self.similarity.toarray()

  def num_parameters(self) -> int:
    return int(self.similarity.nnz)


class EASE(ItemItemModel):
  """Steck's closed form: B = I - P / diag(P) with P = (X^T X + lambda I)^-1, so B has a
  zero diagonal (an item may not predict itself); score = x_u B.

  Memory: the model is one dense n_items x n_items float32 matrix, N^2 * 4 bytes (the
  inverse overwrites X^T X): ml-latest-small's 9742 items keep 380 MB and peak at ~590 MB
  while fitting (measured). float32 is accurate enough because lambda bounds the
  condition number of X^T X + lambda I. Catalogues over `max_items` are refused."""

  name = "ease"

  def __init__(self, l2: float = 500.0, max_items: int = 20_000, tie_breaker: float = 1e-6):
    self.l2 = l2
    self.max_items = max_items
    self.tie_breaker = tie_breaker

  def fit(self, split: Split, seed: int = 0) -> None:
    n = split.n_items
    if n > self.max_items:
      raise ValueError(
          f"EASE needs a dense {n} x {n} item-item inverse: {n * n:,} floats, "
          f"{n * n * 4 / 1e9:.1f} GB in float32 (more while inverting); the catalogue has "
          f"{n} items, over max_items={self.max_items}. Raise max_items if the machine has "
          f"the memory, or use itemknn.")
    x = interaction_matrix(split)
    gram = (x.T @ x).toarray()  # float32 [n, n]
    gram[np.diag_indices(n)] += self.l2
    p = scipy.linalg.inv(gram, overwrite_a=True, check_finite=False)
    del gram
    diag = np.diag(p).copy()
    p /= -diag[None, :]  # B = -P / diag(P) off the diagonal ...
    p[np.diag_indices(n)] = 0  # ... and 0 on it (I - P/diag(P) has diagonal 1 - 1)
    self.weights = p.astype(np.float32, copy=False)
    self.popularity = normalised_popularity(split)

  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    history = history_matrix(split, split.test_users[rows])
    return self._with_tie_breaker(history @ self.weights)

  def item_item_matrix(self) -> np.ndarray:
    return self.weights

  def num_parameters(self) -> int:
    return int(self.weights.size)


class Transitions(ItemItemModel):
  """Counts of item a -> item b over each user's time-ordered fit items, b coming 1, 2,
  ... `window` steps after a with weight 1, 1/2, ... A user's score is the sum of the
  transition rows of their last `window` items, weighted the same way (the latest item
  counts most), plus 1e-6 x normalised popularity so ties, and users whose last items
  have no recorded transitions, still get a popularity ranking."""

  name = "transitions"

  def __init__(self, window: int = 3, tie_breaker: float = 1e-6):
    self.window = window
    self.query_window = window
    self.tie_breaker = tie_breaker

  def fit(self, split: Split, seed: int = 0) -> None:
    # fit_users is grouped by user and time-ordered within a user, so a pair (t - d, t)
    # with the same user is "item at t came d steps after item at t - d".
    src, dst, weight = [], [], []
    for d in range(1, self.window + 1):
      same_user = split.fit_users[d:] == split.fit_users[:-d]
      src.append(split.fit_items[:-d][same_user])
      dst.append(split.fit_items[d:][same_user])
      weight.append(np.full(int(same_user.sum()), 1.0 / d, np.float32))
    n = split.n_items
    self.transitions = sp.csr_matrix(
        (np.concatenate(weight), (np.concatenate(src), np.concatenate(dst))), shape=(n, n))
    self.popularity = normalised_popularity(split)

  def score(self, split: Split, rows: np.ndarray) -> np.ndarray:
    recent = sp.lil_matrix((len(rows), split.n_items), dtype=np.float32)
    for i, history in enumerate(split.histories(split.test_users[rows])):
      for d, item in enumerate(history[::-1][:self.window], start=1):
        recent[i, item] += 1.0 / d
    return self._with_tie_breaker((recent.tocsr() @ self.transitions).todense())

  def item_item_matrix(self) -> np.ndarray:
    return self.transitions.toarray()

  def num_parameters(self) -> int:
    return int(self.transitions.nnz + len(self.popularity))
