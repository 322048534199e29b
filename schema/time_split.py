"""The time split, per user: a user's later interactions never train a model that is
scored on their earlier ones. One rule, used by TimeSplitExampleGen (the pipeline's
splits), the models' in-process Split (trainer/models/protocol.py) and the leaderboard.

Leave-last-out (the protocol of the NCF / SASRec / BERT4Rec papers): each user's
interactions are ordered by time, ties broken by a seeded hash of (user, item) — never by
item id or file order, which correlate with popularity and release date. The last one
goes to `test`, the one before to `eval`, the rest to `train`. Users with fewer than
`min_to_hold_out` interactions stay wholly in `train`.

Slice features, computed from the train split only, label each example for evaluation:
`item_popularity` (the item's training interactions: cold 0 / rare 1-4 / mid 5-49 /
popular 50+), `user_activity` (the user's: new <5 / light 5-19 / regular 20-99 /
heavy 100+) and `daypart` (from hour).
"""
import hashlib
from typing import Dict, Iterable, List, Tuple

from recsys_tfx.schema import features as feats

SPLITS = ("train", "eval", "test")
MIN_INTERACTIONS_TO_HOLD_OUT = 3  # train, eval, test: one each at least
MULTI_VALUE_SEPARATOR = "|"

ITEM_POPULARITY = "item_popularity"
USER_ACTIVITY = "user_activity"
DAYPART = "daypart"
SLICE_FEATURES = (ITEM_POPULARITY, USER_ACTIVITY, DAYPART)


def tie_break(seed: int, user_id: str, item_id: str) -> int:
  """A deterministic order for equal timestamps that carries no signal."""
  digest = hashlib.blake2b(f"{seed}|{user_id}|{item_id}".encode(), digest_size=8).digest()
  return int.from_bytes(digest, "big")


def time_order(rows: List[Dict[str, str]], seed: int) -> List[Dict[str, str]]:
  """One user's rows by time, ties broken by `tie_break`."""
  return sorted(
      rows, key=lambda r: (int(r["timestamp"]), tie_break(seed, r["user_id"], r["item_id"])))


def assign_splits(rows: List[Dict[str, str]], seed: int, min_to_hold_out: int
                  ) -> Iterable[Tuple[str, Dict[str, str]]]:
  """One user's rows -> (split, row) in time order."""
  ordered = time_order(rows, seed)
  n = len(ordered)
  for i, row in enumerate(ordered):
    if n < min_to_hold_out or i < n - 2:
      yield "train", row
    elif i == n - 2:
      yield "eval", row
    else:
      yield "test", row


def with_history(split_rows: Iterable[Tuple[str, Dict[str, str]]], length: int
                 ) -> Iterable[Tuple[str, Dict[str, str]]]:
  """Adds `history` to each of one user's time-ordered rows: the ids of the user's
  previous `length` items, oldest first. Only earlier rows count, so an example's own
  item (and a held-out one's) is never in its history."""
  previous: List[str] = []
  for split, row in split_rows:
    if not length:
      yield split, row
      continue
    out = dict(row)
    out[feats.HISTORY] = MULTI_VALUE_SEPARATOR.join(previous[-length:])
    previous.append(row[feats.ITEM_ID])
    yield split, out


def bucket(count: int, edges, labels) -> str:
  """The label of the first edge the count is below (the last label otherwise)."""
  for edge, label in zip(edges, labels):
    if count < edge:
      return label
  return labels[-1]


def popularity_bucket(count: int) -> str:
  return bucket(count, (1, 5, 50), ("cold", "rare", "mid", "popular"))


def activity_bucket(count: int) -> str:
  return bucket(count, (5, 20, 100), ("new", "light", "regular", "heavy"))


def daypart(hour: int) -> str:
  return bucket(hour, (6, 12, 18), ("night", "morning", "afternoon", "evening"))


def add_slice_features(row: Dict[str, str], item_counts: Dict[str, int],
                       user_counts: Dict[str, int]) -> Dict[str, str]:
  out = dict(row)
  out[ITEM_POPULARITY] = popularity_bucket(item_counts.get(row[feats.ITEM_ID], 0))
  out[USER_ACTIVITY] = activity_bucket(user_counts.get(row[feats.USER_ID], 0))
  out[DAYPART] = daypart(int(float(row["hour"])))
  return out
