"""The ranker's training data: lists of the candidates a retrieval stage really produces,
with the interaction that came next among them where retrieval found it.

Leakage is the danger: a retrieval model fitted on an interaction ranks it unrealistically
high, and a ranker trained on such lists learns to trust retrieval more than it should.
So the candidate sources are fitted on an earlier window: each user's fit interactions
(train and eval splits) but the last `list_targets + 1`, which are held back. Each
held-back interaction becomes one list, scored with the user's history up to it (the
fitted items, then the held-back ones before it): no source has seen it, nor anything
after it. A user's latest held-back interaction (usually the eval split's) makes the
validation lists; the earlier ones the training lists.

A list is what the serving funnel builds (trainer/export.py RetrievalModule._candidates,
serving/funnel.py): every source's top-K over the whole catalogue, their union, minus
the items of the history; each candidate carries every source's score and its 1-based
rank in that source's top-K (0 when that source did not retrieve it). A list that does
not hold the held-back item is dropped, and counted.
"""
import dataclasses
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np
import pandas as pd

from recsys_tfx.trainer.models.protocol import Recommender, Split


@dataclasses.dataclass
class Lists:
  """Candidate lists, padded to one length with "" items (scores and ranks 0 there)."""
  user_ids: np.ndarray  # object [n]
  item_ids: np.ndarray  # object [n, length]; "" = padding
  source_scores: np.ndarray  # float32 [n, length, sources]
  source_ranks: np.ndarray  # float32 [n, length, sources]
  positive: np.ndarray  # int64 [n]: the held-back item's position in its list
  context: pd.DataFrame  # [n] the held-back interaction's context (hour, device, ...)
  latest: np.ndarray  # bool [n]: made of the user's latest held-back interaction

  def __len__(self) -> int:
    return len(self.user_ids)


@dataclasses.dataclass
class Targets:
  """Held-back interactions, one per (user, position from the end)."""
  users: np.ndarray  # int64 [n] user indices
  items: np.ndarray  # int64 [n] item indices
  context: pd.DataFrame
  histories: List[np.ndarray]  # item indices before each target, in time order
  latest: np.ndarray  # bool [n]: the user's latest held-back interaction (validation)


def hold_back(split: Split, per_user: int) -> Tuple[Split, Targets]:
  """(the split fitted on the earlier window, the held-back targets). Each user keeps
  at least one fitted interaction; at most `per_user` + 1 of the rest are held back."""
  starts = np.flatnonzero(np.r_[True, np.diff(split.fit_users) != 0]) if len(
      split.fit_users) else np.zeros(0, np.int64)
  ends = np.r_[starts[1:], len(split.fit_users)]
  keep = np.ones(len(split.fit_users), bool)
  target_rows, histories, latest = [], [], []
  for start, end in zip(starts, ends):
    held = min(per_user + 1, end - start - 1)
    for row in range(end - held, end):
      keep[row] = False
      target_rows.append(row)
      histories.append(split.fit_items[start:row])
      latest.append(row == end - 1)
  rows = np.array(target_rows, np.int64)
  earlier = dataclasses.replace(
      split, fit_users=split.fit_users[keep], fit_items=split.fit_items[keep],
      fit_times=split.fit_times[keep],
      fit_context=split.fit_context[keep].reset_index(drop=True),
      sequences=_sequences(split.fit_users[keep], split.fit_items[keep], split.n_users))
  targets = Targets(split.fit_users[rows], split.fit_items[rows],
                    split.fit_context.iloc[rows].reset_index(drop=True), histories,
                    np.array(latest, bool))
  return earlier, targets


def _sequences(users: np.ndarray, items: np.ndarray, n_users: int) -> List[np.ndarray]:
  sequences = [np.empty(0, np.int64)] * n_users
  if len(users):
    for chunk in np.split(np.arange(len(users)), np.flatnonzero(np.diff(users)) + 1):
      sequences[users[chunk[0]]] = items[chunk]
  return sequences


def _view(split: Split, targets: Targets, rows: np.ndarray) -> Split:
  """The fitted split, asked about some targets: each target's user with its history up
  to the target (Recommender.score reads split.sequences as the history)."""
  sequences = list(split.sequences)
  for row in rows:
    sequences[targets.users[row]] = targets.histories[row]
  return dataclasses.replace(split, sequences=sequences, test_users=targets.users[rows],
                             test_items=targets.items[rows],
                             test_context=targets.context.iloc[rows].reset_index(drop=True))


def build(split: Split, targets: Targets, sources: Sequence[Recommender], top_k: int,
          log=print, batch: int = 256) -> Tuple[Lists, int]:
  """(the lists of every target whose item the sources retrieved, how many were dropped
  because they did not)."""
  lists, dropped = [], 0
  # One target per user at a time, since a user's history differs from target to target.
  for group in _one_per_user(targets):
    view = _view(split, targets, group)
    local = np.arange(len(group))
    for start in range(0, len(group), batch):
      rows = local[start:start + batch]
      scores = [np.asarray(source.score(view, rows), np.float32) for source in sources]
      for i, row in enumerate(group[rows]):
        made = _one_list([s[i] for s in scores], targets.histories[row], targets.items[row],
                         top_k)
        if made is None:
          dropped += 1
        else:
          lists.append((row, *made))
  log(f"ranker lists: {len(lists):,} with the held-back item among the candidates, "
      f"{dropped:,} dropped without it")
  return _pad(split, targets, lists, len(sources)), dropped


def _one_per_user(targets: Targets) -> List[np.ndarray]:
  """Target rows in groups that hold each user at most once."""
  groups: Dict[int, List[int]] = {}
  seen: Dict[int, int] = {}
  for row, user in enumerate(targets.users.tolist()):
    k = seen.get(user, 0)
    seen[user] = k + 1
    groups.setdefault(k, []).append(row)
  return [np.array(rows, np.int64) for _, rows in sorted(groups.items())]


def _one_list(scores: List[np.ndarray], history: np.ndarray, target: int, top_k: int):
  """(candidates, their scores [c, S], ranks [c, S], the target's position) or None."""
  k = min(top_k, len(scores[0]))
  tops = [np.argsort(-s, kind="stable")[:k] for s in scores]
  seen = set(history.tolist())
  union = [i for i in dict.fromkeys(np.concatenate(tops).tolist()) if i not in seen]
  if target not in union:
    return None
  candidates = np.array(union, np.int64)
  ranks = np.zeros((len(candidates), len(scores)), np.float32)
  for s, top in enumerate(tops):
    position = {item: rank for rank, item in enumerate(top.tolist(), start=1)}
    ranks[:, s] = [position.get(item, 0) for item in union]
  values = np.stack([s[candidates] for s in scores], axis=1).astype(np.float32)
  return candidates, values, ranks, union.index(target)


def _pad(split: Split, targets: Targets, lists, n_sources: int) -> Lists:
  length = max([len(made[1]) for made in lists] + [1])
  n = len(lists)
  item_ids = np.full((n, length), "", dtype=object)
  scores = np.zeros((n, length, n_sources), np.float32)
  ranks = np.zeros((n, length, n_sources), np.float32)
  positive = np.zeros(n, np.int64)
  for i, (row, candidates, values, source_ranks, at) in enumerate(lists):
    item_ids[i, :len(candidates)] = split.item_ids[candidates]
    scores[i, :len(candidates)] = values
    ranks[i, :len(candidates)] = source_ranks
    positive[i] = at
  rows = np.array([made[0] for made in lists], np.int64)
  return Lists(split.user_ids[targets.users[rows]] if n else np.zeros(0, object), item_ids,
               scores, ranks, positive, targets.context.iloc[rows].reset_index(drop=True),
               targets.latest[rows])


def fit_sources(split: Split, factories: Sequence[Callable[[], Recommender]],
                seed: int) -> List[Recommender]:
  """Fits one fresh model per factory on `split` (the earlier window)."""
  fitted = []
  for factory in factories:
    model = factory()
    model.fit(split, seed=seed)
    fitted.append(model)
  return fitted


def select(lists: Lists, mask: np.ndarray) -> Lists:
  return Lists(lists.user_ids[mask], lists.item_ids[mask], lists.source_scores[mask],
               lists.source_ranks[mask], lists.positive[mask],
               lists.context[mask].reset_index(drop=True), lists.latest[mask])
