"""The per-user time split, its tie-break and the history feature, without running Beam."""
import numpy as np

from recsys_tfx.schema.time_split import assign_splits, tie_break, with_history


def _rows(user, stamps):
  return [{"user_id": user, "item_id": f"i{n}", "timestamp": str(t)} for n, t in enumerate(stamps)]


def test_last_two_interactions_are_held_out_in_time_order():
  rows = _rows("u", [50, 10, 40, 20, 30])  # file order is not time order
  splits = list(assign_splits(rows, seed=0, min_to_hold_out=3))
  assert [s for s, _ in splits] == ["train", "train", "train", "eval", "test"]
  assert [int(r["timestamp"]) for _, r in splits] == [10, 20, 30, 40, 50]


def test_short_histories_stay_in_train():
  splits = list(assign_splits(_rows("u", [1, 2]), seed=0, min_to_hold_out=3))
  assert [s for s, _ in splits] == ["train", "train"]


def test_ties_are_broken_by_seeded_hash_not_by_item_id_or_file_order():
  rows = _rows("u", [7] * 40)
  held_out = {seed: next(r["item_id"] for s, r in assign_splits(rows, seed, 3) if s == "test")
              for seed in range(20)}
  # Different seeds hold out different items: the order carries no fixed signal.
  assert len(set(held_out.values())) > 5
  # The same seed always gives the same order, whatever the file order.
  forward = [r["item_id"] for _, r in assign_splits(rows, 3, 3)]
  backward = [r["item_id"] for _, r in assign_splits(list(reversed(rows)), 3, 3)]
  assert forward == backward
  assert forward != sorted(forward)
  assert tie_break(0, "u", "i1") == tie_break(0, "u", "i1") != tie_break(1, "u", "i1")


def test_slice_buckets():
  from recsys_tfx.schema.time_split import activity_bucket, daypart, popularity_bucket
  assert [popularity_bucket(c) for c in (0, 1, 4, 5, 49, 50)] == [
      "cold", "rare", "rare", "mid", "mid", "popular"]
  assert [activity_bucket(c) for c in (0, 4, 5, 19, 20, 99, 100)] == [
      "new", "new", "light", "light", "regular", "regular", "heavy"]
  assert [daypart(h) for h in (0, 5, 6, 11, 12, 17, 18, 23)] == [
      "night", "night", "morning", "morning", "afternoon", "afternoon", "evening", "evening"]


def test_history_holds_only_earlier_items_most_recent_last():
  rows = _rows("u", [50, 10, 40, 20, 30])
  out = list(with_history(assign_splits(rows, seed=0, min_to_hold_out=3), length=2))
  assert [r["history"] for _, r in out] == ["", "i1", "i1|i3", "i3|i4", "i4|i2"]
  held_out = out[-1][1]
  assert held_out["item_id"] not in held_out["history"].split("|")
  # length 0: no history feature at all (the two-tower pipeline does not pay for it)
  assert all("history" not in r for _, r in with_history(assign_splits(rows, 0, 3), 0))


def test_transform_history_window_is_left_padded_and_keeps_the_latest():
  import tensorflow as tf
  from recsys_tfx.trainer.preprocessing import HISTORY_PAD, history_window
  indices = tf.ragged.constant([[1, 2, 3, 4, 5], [7], []], dtype=tf.int64).to_sparse()
  p = HISTORY_PAD
  np.testing.assert_array_equal(history_window(indices, 3).numpy(),
                                [[3, 4, 5], [p, p, 7], [p, p, p]])
