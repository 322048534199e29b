"""Top-K metrics from the rank of the held-out item, in NumPy (the reference the
TFMA metrics are checked against).

Full-catalogue protocol: the held-out item is ranked against every catalogue item the
user has not interacted with in training.  Sampled protocol (as in the NCF / SASRec
papers, reported separately and labelled "sampled"): against 100 sampled items the
user has not interacted with.

Ranks are 0-based (0 = top).  Ties are broken by a seeded random jitter, never in the
held-out item's favour or against it systematically.
"""
from typing import Dict, Iterable, Optional, Sequence, Set

import numpy as np

DEFAULT_KS = (10, 50, 100)
SAMPLED_NEGATIVES = 100


def hit_rate(ranks: np.ndarray, k: int) -> float:
  return float(np.mean(ranks < k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
  """One relevant item per user, so IDCG = 1 and NDCG@K = 1/log2(rank + 2) if in top K."""
  if not len(ranks):
    return 0.0
  gains = np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)
  return float(np.mean(gains))


def summarize(ranks: np.ndarray, ks: Sequence[int] = DEFAULT_KS, prefix: str = "") -> Dict[str, float]:
  out = {}
  for k in ks:
    out[f"{prefix}hit_rate@{k}"] = hit_rate(ranks, k)
    out[f"{prefix}ndcg@{k}"] = ndcg(ranks, k)
  return out


def rank_of_target(scores: np.ndarray, target: np.ndarray, exclude: Iterable[Set[int]],
                   rng: np.random.Generator) -> np.ndarray:
  """Rank of scores[i, target[i]] among row i's items, with row i's `exclude` items removed.

  scores: [users, items] (modified in place).  A tie-breaking jitter far below any real
  score difference is added, so equal scores (e.g. popularity counts) are ordered at random.
  """
  scores += rng.uniform(0.0, 1e-6, size=scores.shape) * max(1e-12, float(np.abs(scores).max()))
  for row, items in enumerate(exclude):
    items = [i for i in items if i != target[row]]
    if items:
      scores[row, items] = -np.inf
  target_scores = scores[np.arange(len(target)), target]
  return (scores > target_scores[:, None]).sum(axis=1)


def sampled_negatives(num_items: int, seen: Set[int], rng: np.random.Generator,
                      n: int = SAMPLED_NEGATIVES,
                      probabilities: Optional[np.ndarray] = None) -> np.ndarray:
  """n distinct items the user has not interacted with (fewer if the catalogue is small),
  uniformly or with the given per-item probabilities."""
  allowed = num_items - len(seen)
  n = min(n, max(0, allowed))
  picked: Set[int] = set()
  while len(picked) < n:
    for i in rng.choice(num_items, size=2 * (n - len(picked)), p=probabilities):
      if i not in seen and i not in picked:
        picked.add(int(i))
        if len(picked) == n:
          break
  return np.fromiter(picked, dtype=np.int64, count=len(picked))


def sampled_rank(scores_row: np.ndarray, target: int, negatives: np.ndarray,
                 rng: Optional[np.random.Generator] = None) -> int:
  """Rank of the target among itself and the sampled negatives (ties counted at random)."""
  t = scores_row[target]
  neg = scores_row[negatives]
  greater = int((neg > t).sum())
  ties = int((neg == t).sum())
  if ties and rng is not None:
    greater += int(rng.integers(0, ties + 1))
  return greater
