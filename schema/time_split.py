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
# Least data worth a pipeline run (checked before it starts: check_enough_data).
# Evaluation averages over the users held out: below 10, one user moves HR@10 by 0.1 or
# more, ten times the validation's regression tolerance (0.01), so no verdict means much.
MIN_HELD_OUT_USERS = 10
# Validation compares HR@10 with popularity's: with 10 items or fewer every model's HR@10
# is 1, so no model can beat popularity and none would ever be blessed.
MIN_ITEMS = 11
MULTI_VALUE_SEPARATOR = "|"

ITEM_POPULARITY = "item_popularity"
USER_ACTIVITY = "user_activity"
DAYPART = "daypart"
SLICE_FEATURES = (ITEM_POPULARITY, USER_ACTIVITY, DAYPART)


def check_enough_data(user_ids, item_ids, min_to_hold_out: int, source: str) -> None:
  """Raises ValueError, saying how much is needed, when the interactions (two sequences
  of ids, one per interaction) cannot hold out enough users to evaluate a model: at least
  MIN_HELD_OUT_USERS users with min_to_hold_out interactions each (one for train, eval
  and test at least), over at least MIN_ITEMS distinct items."""
  import pandas as pd
  per_user = pd.Series(user_ids).value_counts()
  held_out = int((per_user >= min_to_hold_out).sum())
  items = int(pd.Series(item_ids).nunique())
  if held_out >= MIN_HELD_OUT_USERS and items >= MIN_ITEMS:
    return
  have = (f"{len(per_user):,} user(s), {held_out:,} of them with {min_to_hold_out}+ "
          f"interactions, and {items:,} distinct item(s)")
  raise ValueError(
      f"{source}: too little data to hold any users out for evaluation: it has {have}; "
      f"needed: at least {MIN_HELD_OUT_USERS} users with {min_to_hold_out}+ interactions "
      f"each (the last to test, the one before to eval, the rest to train) and at least "
      f"{MIN_ITEMS} distinct items (HR@10 over 10 items or fewer is always 1)")


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
