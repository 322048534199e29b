"""The synthetic world: deterministic, the right shape, and the planted effects are there."""

import numpy as np
import pandas as pd
import pytest

from recsys_tfx.components.ingest import synthetic as syn
from recsys_tfx.schema.canonical import validate


@pytest.fixture(scope="module")
def demo():
  """Demo-sized world (80K interactions): enough data to see each planted effect."""
  return syn.generate_with_world(**syn.DEMO, seed=0)


def _indices(data):
  it = data.interactions
  return syn.id_index(it["user_id"]), syn.id_index(it["item_id"])


def test_same_seed_gives_identical_frames():
  a, b = syn.generate(**syn.TINY, seed=3), syn.generate(**syn.TINY, seed=3)
  pd.testing.assert_frame_equal(a.interactions, b.interactions)
  pd.testing.assert_frame_equal(a.items, b.items)
  pd.testing.assert_frame_equal(a.users, b.users)


def test_another_seed_gives_another_world():
  a, b = syn.generate(**syn.TINY, seed=0), syn.generate(**syn.TINY, seed=1)
  columns = ["item_id", "timestamp"]
  assert not a.interactions[columns].equals(b.interactions[columns])
  assert not a.items["genres"].equals(b.items["genres"])


def test_sizes():
  tiny = syn.generate(**syn.TINY)
  assert (len(tiny.interactions), len(tiny.items), len(tiny.users)) == (6000, 300, 300)
  assert len(syn.generate_by_size(10_000).interactions) == 10_000
  with pytest.raises(ValueError):
    syn.generate(n_users=10, n_items=100, interactions_per_user=3)


def test_canonical_tables(demo):
  data, _ = demo
  validate(data)
  assert (data.name, data.schema_name) == ("synthetic", "synthetic")
  it = data.interactions
  assert list(it.columns) == ["user_id", "item_id", "timestamp", "hour", "label", "device"]
  assert it.dtypes.astype(str).tolist() == ["object", "object", "int64", "int64", "float32",
                                            "object"]
  assert (it["label"] == 1.0).all()
  assert set(it["device"]) == set(syn.DEVICES)
  assert list(data.items.columns) == ["item_id", "genres", "title", "year"]
  assert data.items["title"].str.len().min() > 0
  genres = data.items["genres"].str.split("|")
  assert genres.map(len).between(1, 3).all()
  assert set(genres.explode()) == set(syn.GENRES)
  assert list(data.users.columns) == ["user_id", "age", "gender"]
  assert set(data.users["gender"]) == {"F", "M"}


def test_timeline(demo):
  it = demo[0].interactions
  per_user = it.groupby("user_id")
  assert per_user.size().min() >= syn.MIN_PER_USER
  assert not it.duplicated(["user_id", "item_id"]).any()
  assert per_user["timestamp"].apply(lambda t: t.is_monotonic_increasing and t.is_unique).all()
  assert (it["hour"] == (it["timestamp"] // 3600) % 24).all()  # UTC hour of the timestamp
  days = (it["timestamp"] - syn.TIMELINE_START) / 86400
  assert days.min() >= 0 and days.max() < syn.TIMELINE_DAYS + 2


def test_conflict_genres_liked_alone_disliked_together(demo):
  data, world = demo
  u, i = _indices(data)
  genres = world.item_genres[:, [syn.GENRE_INDEX[g] for g in syn.CONFLICT_GENRES]]
  both, one = genres.all(axis=1), genres.sum(axis=1) == 1

  def rate(users, items):  # interactions per item of a kind, among these users
    return np.mean(items[i[users[u]]]) / items.mean()

  fans = world.conflict_fans
  conflict_columns = [syn.GENRE_INDEX[g] for g in syn.CONFLICT_GENRES]
  one_likers = world.user_likes[:, conflict_columns].sum(axis=1) == 1
  assert fans.sum() > 50 and both.sum() > 20
  # Fans take items with only one of the genres, and avoid items with both ...
  assert rate(fans, one) > 1.5
  assert rate(fans, both) < 0.2 * rate(fans, one)
  # ... while users who like just one of the two take items with both.
  assert rate(one_likers, both) > 0.5 * rate(one_likers, one)
  # The planted ground truth says the same.
  fan = np.flatnonzero(fans)[0]
  users = [f"u{fan}"] * 2
  items = [f"i{np.flatnonzero(both)[0]}", f"i{np.flatnonzero(one)[0]}"]
  aff_both, aff_one = syn.true_affinity(world, users, items)
  assert aff_both < -2 and aff_one > aff_both + 3


def test_time_of_day_and_device(demo):
  data, world = demo
  it = data.interactions
  _, i = _indices(data)
  daypart = np.array(syn.DAYPARTS)[syn.DAYPART_OF_HOUR[it["hour"]]]
  morning, night = daypart == "morning", daypart == "night"
  for g in syn.MORNING_GENRES:
    has = world.item_genres[i, syn.GENRE_INDEX[g]]
    assert has[morning].mean() > 1.5 * has[night].mean(), g
  for g in syn.NIGHT_GENRES:
    has = world.item_genres[i, syn.GENRE_INDEX[g]]
    assert has[night].mean() > 1.5 * has[morning].mean(), g
  tv = (it["device"] == "tv").to_numpy()
  assert tv[daypart == "evening"].mean() > 2 * tv[morning].mean()
  news = world.item_genres[i, syn.GENRE_INDEX["news"]]
  assert news[(it["device"] == "mobile").to_numpy()].mean() > news[tv].mean()


def test_series_continuation(demo):
  data, world = demo
  u, i = _indices(data)
  prev, same_user = i[:-1], u[1:] == u[:-1]
  nxt = world.series_next[prev]
  has_next = same_user & (nxt >= 0)
  assert has_next.sum() > 1000
  assert (i[1:][has_next] == nxt[has_next]).mean() > 0.4


def test_popularity_skew(demo):
  data, _ = demo
  counts = data.interactions["item_id"].value_counts()
  top_tenth = counts.iloc[: len(data.items) // 10].sum() / counts.sum()
  assert top_tenth > 0.3
  assert counts.iloc[0] > 20 * counts.median()


def test_cold_start_items(demo):
  data, world = demo
  _, i = _indices(data)
  assert world.is_new.mean() == pytest.approx(syn.NEW_ITEM_FRACTION, abs=0.01)
  new_rows = world.is_new[i]
  first_allowed = syn.TIMELINE_START + syn.NEW_ITEMS_FROM * syn.TIMELINE_DAYS * 86400
  assert (data.interactions["timestamp"][new_rows] >= first_allowed).all()
  used = set(i[new_rows])
  assert 0 < len(used) < world.is_new.sum()  # some appear late, some never
  assert (data.items["year"][world.is_new] == 2023).all()


def test_user_features_carry_signal(demo):
  data, world = demo
  u, i = _indices(data)
  age = data.users["age"].to_numpy()[u]
  kids = world.item_genres[i, syn.GENRE_INDEX["kids"]]
  parents = (age >= 28) & (age <= 45)
  assert kids[parents].mean() > 1.3 * kids[~parents].mean()
  romance = world.item_genres[i, syn.GENRE_INDEX["romance"]]
  female = data.users["gender"].to_numpy()[u] == "F"
  assert romance[female].mean() > 1.15 * romance[~female].mean()
  # The latent tastes behind it: who likes kids / romance depends on age / gender.
  users_age, users_female = data.users["age"].to_numpy(), data.users["gender"].to_numpy() == "F"
  likes_kids = world.user_likes[:, syn.GENRE_INDEX["kids"]]
  parents_age = (users_age >= 28) & (users_age <= 45)
  assert likes_kids[parents_age].mean() > 2 * likes_kids[users_age > 45].mean()
  likes_romance = world.user_likes[:, syn.GENRE_INDEX["romance"]]
  assert likes_romance[users_female].mean() > 1.5 * likes_romance[~users_female].mean()
