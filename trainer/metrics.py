"""Top-K metrics from the rank of the held-out item: the one implementation the run
summary (RetrievalEvaluator, RankingEvaluator), the leaderboard and the serving-quality
check use, and the reference the SavedModel's TFMA ranks (trainer/export.py
rank_of_targets) are tested against.

Ranks are 0-based (0 = top). One tie rule everywhere: an item scored equal to the
held-out item counts as ranked above it, so a model of coarse scores (raw popularity
counts) gains nothing from ties. A NaN score never ranks above anything.

Full-catalogue protocol: the held-out item is ranked against every catalogue item the
user has not interacted with in the fit data. Sampled protocol (as in the NCF / SASRec
papers, reported separately and labelled "sampled"): against SAMPLED_NEGATIVES items the
user never interacted with, drawn with a fixed seed.
"""
from typing import Dict, Iterable, Optional, Sequence, Set

import numpy as np

DEFAULT_KS = (10, 50, 100)
SAMPLED_NEGATIVES = 100
NEVER = 10 ** 9  # the rank of an item a list does not hold (a retrieval miss)


def hit_rate(ranks: np.ndarray, k: int) -> float:
  return float(np.mean(np.asarray(ranks) < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
  """One relevant item per user, so IDCG = 1 and NDCG@K = 1/log2(rank + 2) if in top K."""
  if not len(ranks):
    return 0.0
  ranks = np.asarray(ranks, np.float64)
  return float(np.mean(np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)))


def summarize(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
              prefix: str = "") -> Dict[str, float]:
  out = {}
  for k in ks:
    out[f"{prefix}hit_rate@{k}"] = hit_rate(ranks, k)
    out[f"{prefix}ndcg@{k}"] = ndcg(ranks, k)
  return out


def _finite(scores: np.ndarray) -> np.ndarray:
  scores = np.asarray(scores, np.float64)
  return np.where(np.isnan(scores), -np.inf, scores)


def rank_of_target(scores: np.ndarray, target: np.ndarray,
                   exclude: Iterable[Iterable[int]]) -> np.ndarray:
  """Rank of scores[i, target[i]] among row i's items, without row i's `exclude` items
  (the target itself is never excluded). scores: [rows, items]."""
  scores = _finite(scores)
  target = np.asarray(target, np.int64)
  rows = np.arange(len(target))
  target_scores = scores[rows, target]
  above = scores >= target_scores[:, None]
  above[rows, target] = False
  for row, items in enumerate(exclude):
    items = np.fromiter((i for i in items if i != target[row]), np.int64)
    above[row, items] = False
  return above.sum(axis=1)


def rank_in_list(scores: np.ndarray) -> np.ndarray:
  """Rank of position 0 (the held-out item) within each row of candidate scores."""
  scores = _finite(scores)
  return (scores[:, 1:] >= scores[:, :1]).sum(axis=1)


def sampled_negatives(num_items: int, excluded: Set[int], rng: np.random.Generator,
                      n: int = SAMPLED_NEGATIVES,
                      probabilities: Optional[np.ndarray] = None) -> np.ndarray:
  """n distinct items outside `excluded` (fewer if the catalogue is too small), drawn
  uniformly or with the given per-item probabilities, in the order drawn."""
  n = min(n, max(0, num_items - len(excluded)))
  picked: Dict[int, None] = {}
  while len(picked) < n:
    for i in rng.choice(num_items, size=2 * (n - len(picked)), p=probabilities):
      i = int(i)
      if i not in excluded and i not in picked:
        picked[i] = None
        if len(picked) == n:
          break
  return np.fromiter(picked, dtype=np.int64, count=len(picked))


def popularity_scores(counts: np.ndarray, seed: int = 0) -> np.ndarray:
  """The popularity baseline's scores: training counts plus a seeded random fraction
  below 1, so that equal counts are ordered by chance, never by item id or position (and
  the tie rule above does not count them against popularity)."""
  counts = np.asarray(counts, np.float64)
  return counts + np.random.default_rng(seed).random(len(counts)) * 0.5
