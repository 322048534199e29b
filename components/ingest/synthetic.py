"""A deterministic synthetic world that plants what deep recommenders exist to capture.

`generate(..., seed)` returns the same frames for the same arguments and seed. Tables:
interactions (user_id, item_id, timestamp, hour, label=1.0, device), items (item_id,
genres, title, year), users (user_id, age, gender). Ids are "u<n>" and "i<n>".

Each interaction is drawn as a softmax choice (Gumbel-max) over a pool of POOL_SIZE
random items plus the next episode of the user's previous item (a pool, not the whole
catalogue, keeps 5M interactions to ~20 s of vectorised numpy), scored by

    taste . genres  -  CONFLICT_PENALTY [conflict fan and item has both conflict genres]
    + daypart effect . genres  +  device effect . genres         (context)
    + POPULARITY_EXPONENT * log popularity                        (Zipf skew)
    + SERIES_BONUS [next episode of the previous item]  +  SAME_GENRE_BONUS on the
      previous item's primary genre (in the taste vector)           (sequence)

where `genres` is the item's genre indicator averaged over its 1-3 genres. Items already
seen, and new items before their release time, are excluded.

Planted effects (the constants name them, tests check them):

1. Taste from user features: each user likes 2-3 of the 12 GENRES (taste LIKED_TASTE,
   otherwise about DISLIKED_TASTE); which ones depends on age and gender (e.g. kids for
   ages 28-45, romance for "F", news/documentary rise with age, horror/music fall).
2. Nonlinear conflict: CONFLICT_GENRES = ("cooking", "horror"). CONFLICT_FAN_FRACTION of
   users like both and CONFLICT_ITEM_FRACTION of items have exactly these two genres;
   each genre alone is liked, but an item with BOTH scores
   -CONFLICT_PENALTY lower for a fan (affinity about 2 - 5 = -3), while users who like
   only one of the two still like it. No sum of per-genre terms can express this.
3. Time of day: MORNING_GENRES (kids, news) get +DAYPART_EFFECT in the morning (5-10 h)
   and NIGHT_GENRES (horror, thriller) at night (22-4 h), kids are down at night. Each
   user has a chronotype (morning/day/evening/night person, linked to age) that sets
   when their sessions happen. `device` (mobile/desktop/tv) depends on the daypart
   (DEVICE_BY_DAYPART: tv in the evening, mobile at night and in the morning) and shifts
   the genre mix (DEVICE_GENRE_BONUS: tv -> action/scifi/drama, mobile -> news/music).
4. Sequential intent: SERIES_FRACTION of items form series of 3-6 episodes; after
   episode k the next episode gets +SERIES_BONUS, so it is the next interaction most of
   the time. Sessions also tend to stay in a genre: the previous item's primary
   genre gets +SAME_GENRE_BONUS taste for the next draw.
5. Popularity: a random Zipf-like popularity (exponent POPULARITY_EXPONENT) gives a long
   tail, so a popularity baseline is meaningful but beatable.
6. Cold-start items: NEW_ITEM_FRACTION of items are new (year = the timeline's year);
   each is released at a random time from NEW_ITEMS_FROM of the timeline on, some only
   after its end, so they have content features but few or no interactions (once out,
   they get +NEW_ITEM_BOOST log popularity, so some show up in late, held-out data).
7. Timeline: TIMELINE_DAYS days from TIMELINE_START (UTC); timestamps are strictly
   increasing per user and `hour` is the UTC hour of the timestamp. Each user has at
   least MIN_PER_USER interactions and never interacts with the same item twice.

`generate_with_world` also returns the `World` (latent taste, genres, series, release
times); `true_affinity` exposes the planted user-item (and context) score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from recsys_tfx.schema.canonical import InteractionData, canonicalize

GENRES = ("action", "comedy", "drama", "romance", "thriller", "horror",
          "scifi", "kids", "news", "cooking", "documentary", "music")
CONFLICT_GENRES = ("cooking", "horror")
CONFLICT_PENALTY = 5.0
CONFLICT_FAN_FRACTION = 0.08  # users forced to like both conflict genres
CONFLICT_ITEM_FRACTION = 0.05  # items that have exactly the two conflict genres
LIKED_TASTE, DISLIKED_TASTE = 2.0, -0.5

DAYPARTS = ("night", "morning", "day", "evening")
DAYPART_OF_HOUR = np.array([0] * 5 + [1] * 6 + [2] * 7 + [3] * 4 + [0] * 2)  # index = hour
MORNING_GENRES = ("kids", "news")
NIGHT_GENRES = ("horror", "thriller")
DAYPART_EFFECT = 1.5
DEVICES = ("mobile", "desktop", "tv")
DEVICE_BY_DAYPART = {  # P(device | daypart), in DEVICES order
    "night": (0.6, 0.1, 0.3), "morning": (0.6, 0.25, 0.15),
    "day": (0.35, 0.5, 0.15), "evening": (0.25, 0.15, 0.6)}
DEVICE_GENRE_BONUS = {
    "mobile": {"news": 0.7, "music": 0.7, "comedy": 0.5},
    "desktop": {"documentary": 0.5, "cooking": 0.5, "news": 0.3},
    "tv": {"action": 0.7, "scifi": 0.7, "drama": 0.5, "kids": 0.3}}

SERIES_FRACTION = 0.25
SERIES_BONUS = 5.0
SAME_GENRE_BONUS = 1.0
POPULARITY_EXPONENT = 1.0
NEW_ITEM_FRACTION = 0.05
NEW_ITEMS_FROM = 0.85  # new items are released from this fraction of the timeline on
NEW_ITEM_BOOST = 2.0  # added to a new item's log popularity

TIMELINE_START = 1672531200  # 2023-01-01 00:00:00 UTC
TIMELINE_DAYS = 365
MIN_PER_USER = 5
POOL_SIZE = 64  # random candidates per draw (plus the next episode)

DEMO = dict(n_users=2000, n_items=1500, interactions_per_user=40)  # ~80K interactions
TINY = dict(n_users=300, n_items=300, interactions_per_user=20)  # 6K, for tests

GENRE_INDEX = {g: i for i, g in enumerate(GENRES)}  # column of a genre in World arrays
_DAY = 86400


@dataclass
class World:
  """The planted ground truth behind one generated dataset (indices = "u<n>"/"i<n>")."""

  user_taste: np.ndarray  # (n_users, n_genres) float32
  user_likes: np.ndarray  # (n_users, n_genres) bool
  item_genres: np.ndarray  # (n_items, n_genres) bool
  log_popularity: np.ndarray  # (n_items,)
  series_id: np.ndarray  # (n_items,) int, -1 when not in a series
  series_next: np.ndarray  # (n_items,) int, index of the next episode or -1
  is_new: np.ndarray  # (n_items,) bool, the cold-start items
  release_time: np.ndarray  # (n_items,) int64 epoch seconds (0 = always available)

  @property
  def conflict_fans(self) -> np.ndarray:
    return self.user_likes[:, [GENRE_INDEX[g] for g in CONFLICT_GENRES]].all(axis=1)

  @property
  def conflict_items(self) -> np.ndarray:
    return self.item_genres[:, [GENRE_INDEX[g] for g in CONFLICT_GENRES]].all(axis=1)


def id_index(ids) -> np.ndarray:
  """Row of the World's arrays for ids like "u12" / "i7"."""
  return pd.Series(ids, dtype=object).str[1:].astype(np.int64).to_numpy()


def _context_matrix() -> tuple[np.ndarray, np.ndarray]:
  """Genre bonus per daypart (4, n_genres) and per device (3, n_genres)."""
  daypart = np.zeros((len(DAYPARTS), len(GENRES)), np.float32)
  for g in MORNING_GENRES:
    daypart[DAYPARTS.index("morning"), GENRE_INDEX[g]] = DAYPART_EFFECT
  for g in NIGHT_GENRES:
    daypart[DAYPARTS.index("night"), GENRE_INDEX[g]] = DAYPART_EFFECT
  daypart[DAYPARTS.index("night"), GENRE_INDEX["kids"]] = -DAYPART_EFFECT
  device = np.zeros((len(DEVICES), len(GENRES)), np.float32)
  for d, bonus in DEVICE_GENRE_BONUS.items():
    for g, b in bonus.items():
      device[DEVICES.index(d), GENRE_INDEX[g]] = b
  return daypart, device


def true_affinity(world: World, user_ids, item_ids, hour=None, device=None) -> np.ndarray:
  """Planted affinity of users for items (element-wise over equal-length id lists):
  taste . mean item genre - conflict penalty, plus the daypart/device effects when
  `hour`/`device` are given. Popularity and sequence effects are not included."""
  u, i = id_index(user_ids), id_index(item_ids)
  genres = world.item_genres[i].astype(np.float32)
  genres /= genres.sum(axis=1, keepdims=True)
  vec = world.user_taste[u].copy()
  daypart, dev = _context_matrix()
  if hour is not None:
    vec += daypart[DAYPART_OF_HOUR[np.asarray(hour, dtype=np.int64)]]
  if device is not None:
    vec += dev[[DEVICES.index(d) for d in device]]
  score = (vec * genres).sum(axis=1)
  return score - CONFLICT_PENALTY * (world.conflict_fans[u] & world.conflict_items[i])


# ---------------------------------------------------------------------------------------
# Users and items.


def _make_users(rng, n_users):
  age = np.clip(np.round(rng.normal(38, 13, n_users)), 16, 80).astype(np.int64)
  female = rng.random(n_users) < 0.5
  a = (age - 35).astype(np.float32)
  logits = np.zeros((n_users, len(GENRES)), np.float32)
  logits[:, GENRE_INDEX["action"]] += 0.8 * ~female - 0.02 * a
  logits[:, GENRE_INDEX["drama"]] += 0.02 * a + 0.3 * female
  logits[:, GENRE_INDEX["romance"]] += 1.0 * female
  logits[:, GENRE_INDEX["thriller"]] += 0.3
  logits[:, GENRE_INDEX["horror"]] += -0.04 * a
  logits[:, GENRE_INDEX["scifi"]] += 0.6 * ~female - 0.02 * a
  logits[:, GENRE_INDEX["kids"]] += np.where((age >= 28) & (age <= 45), 1.5, -0.5)
  logits[:, GENRE_INDEX["news"]] += 0.05 * a
  logits[:, GENRE_INDEX["cooking"]] += 0.5 * female + 0.02 * a
  logits[:, GENRE_INDEX["documentary"]] += 0.03 * a
  logits[:, GENRE_INDEX["music"]] += -0.04 * a
  # 2 or 3 liked genres per user: the top-k of logits + Gumbel noise.
  noisy = logits + rng.gumbel(size=logits.shape)
  k = rng.integers(2, 4, n_users)
  rank = np.argsort(np.argsort(-noisy, axis=1), axis=1)
  likes = rank < k[:, None]
  fans = rng.random(n_users) < CONFLICT_FAN_FRACTION
  likes[np.ix_(fans, [GENRE_INDEX[g] for g in CONFLICT_GENRES])] = True
  taste = np.where(likes, LIKED_TASTE, DISLIKED_TASTE) + rng.normal(0, 0.3, likes.shape)
  users = pd.DataFrame({"user_id": [f"u{i}" for i in range(n_users)], "age": age,
                        "gender": np.where(female, "F", "M").astype(object)})
  return users, taste.astype(np.float32), likes


def _make_items(rng, n_items):
  n_g = len(GENRES)
  weights = np.array([3, 3, 3, 2, 2, 1.5, 1.5, 1.5, 1.5, 1.5, 1, 1.5])
  primary = rng.choice(n_g, n_items, p=weights / weights.sum())
  genres = np.zeros((n_items, n_g), bool)
  genres[np.arange(n_items), primary] = True
  n_extra = rng.choice(3, n_items, p=[0.45, 0.4, 0.15])
  for extra in range(2):  # up to two extra genres (picking one already set is a no-op)
    has = n_extra > extra
    genres[np.flatnonzero(has), rng.integers(0, n_g, has.sum())] = True
  order = rng.permutation(n_items)
  n_conflict = max(2, round(CONFLICT_ITEM_FRACTION * n_items))
  n_new = max(1, round(NEW_ITEM_FRACTION * n_items))
  conflict, new = order[:n_conflict], order[n_conflict:n_conflict + n_new]
  rest = order[n_conflict + n_new:]
  genres[conflict] = False
  genres[np.ix_(conflict, [GENRE_INDEX[g] for g in CONFLICT_GENRES])] = True
  primary[conflict] = rng.choice([GENRE_INDEX[g] for g in CONFLICT_GENRES], n_conflict)

  year = (2022 - np.floor(rng.exponential(10, n_items))).clip(1950, 2022).astype(np.int64)
  is_new = np.zeros(n_items, bool)
  is_new[new] = True
  span = TIMELINE_DAYS * _DAY
  release = np.zeros(n_items, np.int64)
  release[new] = TIMELINE_START + (rng.uniform(NEW_ITEMS_FROM, 1.1, n_new) * span).astype(np.int64)
  year[new] = pd.Timestamp(TIMELINE_START, unit="s").year

  # Series: consecutive runs of 3-6 of the remaining items share genres, years follow.
  series_id = np.full(n_items, -1)
  series_next = np.full(n_items, -1)
  episode = np.zeros(n_items, np.int64)
  members = rest[: round(SERIES_FRACTION * n_items)]
  start, sid = 0, 0
  while len(members) - start >= 3:
    run = members[start:start + int(rng.integers(3, 7))]
    genres[run] = genres[run[0]]
    primary[run] = primary[run[0]]
    year[run] = np.minimum(year[run[0]] + np.arange(len(run)), 2022)
    series_id[run], episode[run] = sid, np.arange(1, len(run) + 1)
    series_next[run[:-1]] = run[1:]
    start, sid = start + len(run), sid + 1

  log_pop = -POPULARITY_EXPONENT * np.log(1 + rng.permutation(n_items))
  log_pop[new] += NEW_ITEM_BOOST  # new releases are in demand once they are out
  items = pd.DataFrame({
      "item_id": [f"i{i}" for i in range(n_items)],
      "genres": _genre_strings(genres, primary),
      "title": _titles(primary, series_id, episode),
      "year": year})
  return items, genres, primary, log_pop, series_id, series_next, is_new, release


def _genre_strings(genres, primary):
  out = []
  for row, p in zip(genres, primary):
    names = [GENRES[p]] + [GENRES[g] for g in np.flatnonzero(row) if g != p]
    out.append("|".join(names))
  return out


def _titles(primary, series_id, episode):
  seen: dict[int, int] = {}
  out = []
  for p, s, e in zip(primary, series_id, episode):
    name = GENRES[p].capitalize()
    if s >= 0:
      out.append(f"{name} Saga {s}: Part {e}")
    else:
      seen[p] = seen.get(p, 0) + 1
      out.append(f"{name} #{seen[p]}")
  return out


# ---------------------------------------------------------------------------------------
# Timeline: how many interactions each user has, when, and on which device.


def _counts(rng, n_users, total, cap):
  weights = rng.lognormal(0, 0.8, n_users)
  counts = MIN_PER_USER + rng.multinomial(total - MIN_PER_USER * n_users, weights / weights.sum())
  while (over := counts > cap).any():  # move the excess of users over the cap to others
    excess = int((counts[over] - cap).sum())
    counts[over] = cap
    room = np.flatnonzero(counts < cap)
    counts[room] += rng.multinomial(excess, weights[room] / weights[room].sum())
  return counts


def _timeline(rng, users, counts):
  """Per interaction: timestamp (sorted, strictly increasing per user) and device."""
  n_users, total = len(counts), int(counts.sum())
  user_of = np.repeat(np.arange(n_users), counts)
  k = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
  new_session = (k == 0) | (rng.random(total) < 0.35)
  session = np.cumsum(new_session) - 1
  s_user = user_of[new_session]
  n_s = len(s_user)

  # Active window per user, in days from TIMELINE_START; many run to the end.
  first = rng.uniform(0, 0.8, n_users)
  last = first + (1 - first) * rng.uniform(0.2, 1.0, n_users)
  day = np.floor(TIMELINE_DAYS * (first[s_user] + (last - first)[s_user] * rng.random(n_s)))

  # Chronotype (morning/day/evening/night person) by age sets the session's hour.
  age = users["age"].to_numpy()
  p_type = np.where((age < 25)[:, None], [0.1, 0.2, 0.35, 0.35],
                    np.where((age < 45)[:, None], [0.25, 0.3, 0.35, 0.1], [0.45, 0.3, 0.2, 0.05]))
  cum = np.cumsum(p_type, axis=1)
  ctype = (rng.random(n_users)[:, None] > cum).sum(axis=1).clip(0, 3)
  window_start = np.array([6, 11, 18, 22])[ctype[s_user]]
  window_len = np.array([4, 6, 4, 5])[ctype[s_user]]
  in_window = rng.random(n_s) < 0.7
  hour = np.where(in_window, window_start + np.floor(rng.random(n_s) * window_len),
                  rng.integers(7, 24, n_s)) % 24
  s_time = TIMELINE_START + day * _DAY + hour * 3600 + rng.integers(0, 3600, n_s)

  dev_p = np.array([DEVICE_BY_DAYPART[d] for d in DAYPARTS])[DAYPART_OF_HOUR[hour.astype(int)]]
  s_device = (rng.random(n_s)[:, None] > np.cumsum(dev_p, axis=1)).sum(axis=1).clip(0, 2)

  # Within a session, items follow each other by 1 minute + ~15 minutes.
  gap = 60 + rng.exponential(900, total).astype(np.int64)
  gap[new_session] = 0
  elapsed = np.cumsum(gap)
  elapsed -= np.repeat(elapsed[new_session], np.bincount(session))
  time = (s_time[session] + elapsed).astype(np.int64)
  device = s_device[session]

  order = np.lexsort((time, user_of))
  time, device = time[order], device[order]
  # Strictly increasing per user: t[k] >= t[k-1] + 1 (a running max, offset per user).
  offset = user_of.astype(np.int64) * 10**11
  time = np.maximum.accumulate(time - k + offset) - offset + k
  return time, device


# ---------------------------------------------------------------------------------------
# Sampling items along each user's timeline.


def _sample_items(rng, world, primary, counts, time, device):
  n_items, n_g = len(primary), len(GENRES)
  daypart_bonus, device_bonus = _context_matrix()
  # An item's genres as 3 slots; unused slots point at an extra always-zero column, so
  # its genre score is (vec[g1] + vec[g2] + vec[g3]) / n_genres.
  slots = np.full((n_items, 3), n_g, np.int64)
  for j, row in enumerate(world.item_genres):
    gs = np.flatnonzero(row)
    slots[j, :len(gs)] = gs
  inv_n = (1.0 / world.item_genres.sum(axis=1)).astype(np.float32)
  fans, conflict = world.conflict_fans, world.conflict_items
  log_pop = world.log_popularity.astype(np.float32)
  daypart = DAYPART_OF_HOUR[(time // 3600) % 24]

  offsets = np.cumsum(counts) - counts
  out = np.full(int(counts.sum()), -1, np.int64)
  chunk = int(max(256, min(len(counts), 2**26 // n_items)))  # seen matrix <= 64 MB
  for c0 in range(0, len(counts), chunk):
    users = np.arange(c0, min(c0 + chunk, len(counts)))
    users = users[np.argsort(-counts[users], kind="stable")]  # active users = a prefix
    cnt = counts[users]
    seen = np.zeros((len(users), n_items), bool)
    for t in range(int(cnt[0])):
      k = int(np.count_nonzero(cnt > t))
      u, rows = users[:k], np.arange(k)
      pos = offsets[u] + t
      prev = out[pos - 1] if t > 0 else np.full(k, -1)
      nxt = np.where(prev >= 0, world.series_next[prev], -1)
      # Candidates: POOL_SIZE random items, then the next episode (or one more random).
      pool = rng.integers(0, n_items, (k, POOL_SIZE + 1))
      pool[:, -1] = np.where(nxt >= 0, nxt, pool[:, -1])
      vec = np.zeros((k, n_g + 1), np.float32)
      vec[:, :n_g] = world.user_taste[u] + daypart_bonus[daypart[pos]] + device_bonus[device[pos]]
      if t > 0:  # sessions tend to stay in the previous item's primary genre
        vec[rows, primary[prev]] += SAME_GENRE_BONUS
      flat, base = vec.ravel(), (rows * (n_g + 1))[:, None]
      g = slots[pool]
      score = flat[base + g[..., 0]] + flat[base + g[..., 1]] + flat[base + g[..., 2]]
      score *= inv_n[pool]
      score += log_pop[pool]
      score[:, -1] += SERIES_BONUS * (nxt >= 0)
      fan = np.flatnonzero(fans[u])  # the conflict penalty only concerns fans
      score[fan] -= CONFLICT_PENALTY * conflict[pool[fan]]
      blocked = seen[rows[:, None], pool] | (world.release_time[pool] > time[pos][:, None])
      score[blocked] = -np.inf
      # Gumbel-max: argmax(score + Gumbel) = argmax(score - log(Exponential)).
      noise = np.log(rng.standard_exponential(score.shape, dtype=np.float32) + np.float32(1e-30))
      best = np.argmax(score - noise, axis=1)
      choice = pool[rows, best]
      for r in np.flatnonzero(~np.isfinite(score[rows, best])):  # whole pool blocked: rare
        free = np.flatnonzero(~seen[r] & (world.release_time <= time[pos[r]]))
        choice[r] = rng.choice(free)
      seen[rows, choice] = True
      out[pos] = choice
  return out


# ---------------------------------------------------------------------------------------
# Public entry points.


def generate_with_world(n_users: int = DEMO["n_users"], n_items: int = DEMO["n_items"],
                        interactions_per_user: float = DEMO["interactions_per_user"],
                        seed: int = 0) -> tuple[InteractionData, World]:
  """The synthetic dataset and its planted ground truth. Exactly
  round(n_users * interactions_per_user) interactions."""
  if n_users < 1 or n_items < 50:
    raise ValueError(f"need n_users >= 1 and n_items >= 50, got {n_users} and {n_items}")
  cap = int(0.5 * (1 - NEW_ITEM_FRACTION - CONFLICT_ITEM_FRACTION) * n_items)
  if not MIN_PER_USER <= interactions_per_user <= cap / 2:
    raise ValueError(f"interactions_per_user must be in [{MIN_PER_USER}, {cap / 2}] for "
                     f"{n_items} items, got {interactions_per_user}")
  rng = np.random.default_rng(seed)
  users, taste, likes = _make_users(rng, n_users)
  (items, genres, primary, log_pop, series_id, series_next, is_new,
   release) = _make_items(rng, n_items)
  world = World(taste, likes, genres, log_pop, series_id, series_next, is_new, release)

  counts = _counts(rng, n_users, round(n_users * interactions_per_user), cap)
  time, device = _timeline(rng, users, counts)
  item = _sample_items(rng, world, primary, counts, time, device)

  user_ids = users["user_id"].to_numpy()
  item_ids = items["item_id"].to_numpy()
  interactions = pd.DataFrame({
      "user_id": user_ids[np.repeat(np.arange(n_users), counts)],
      "item_id": item_ids[item],
      "timestamp": time,
      "hour": (time // 3600) % 24,
      "label": np.ones(len(time), np.float32),
      "device": np.array(DEVICES, dtype=object)[device]})
  return canonicalize("synthetic", "synthetic", interactions, items, users), world


def generate(n_users: int = DEMO["n_users"], n_items: int = DEMO["n_items"],
             interactions_per_user: float = DEMO["interactions_per_user"],
             seed: int = 0) -> InteractionData:
  """A deterministic synthetic dataset (same arguments and seed -> identical frames)."""
  return generate_with_world(n_users, n_items, interactions_per_user, seed)[0]


def size_for(n_interactions: int) -> dict:
  """Users, items and interactions per user for a target interaction count."""
  if n_interactions < 1000:
    raise ValueError(f"n_interactions must be >= 1000, got {n_interactions}")
  per_user = 20 if n_interactions < 80_000 else 40
  n_users = max(1, n_interactions // per_user)
  n_items = int(np.clip(1500 * np.sqrt(n_interactions / 80_000), 300, 200_000))
  return dict(n_users=n_users, n_items=n_items, interactions_per_user=n_interactions / n_users)


def generate_by_size(n_interactions: int, seed: int = 0) -> InteractionData:
  """About `n_interactions` (exactly, up to rounding) with users and items scaled to it."""
  return generate(**size_for(n_interactions), seed=seed)
