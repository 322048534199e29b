"""Business rules applied after the ranker: plain Python over a few hundred candidates.

In the order the funnel applies them (serving/funnel.py):

  1. drop_seen      items the user already interacted with never come back. Applied
                    before ranking, so the ranker does not score them.
  2. fresh boost    items in the fresh set (by default those released in the catalogue's
                    newest year) get their final score raised from their base score (the
                    ranking score; the retrieval score when no ranker is live):
                      mode "add":      final = base score + boost
                      mode "multiply": final = base score * (1 + boost)
                    "add" moves every fresh item by the same amount; "multiply" moves
                    well-ranked fresh items more than poorly ranked ones. Off by default.
  3. order          by final score, best first (ties: base score, then retrieval rank).
  4. cap_per_genre  walking down that order, at most `max_per_genre` items of each primary
                    genre are kept; later ones are dropped, never moved, so the list may
                    end up shorter than k when the candidates span too few genres. Items
                    whose genre is unknown are not capped.
  5. the first k.

Each candidate records which rules changed it (`rules`), and rerank() counts what each
rule removed.
"""
import dataclasses
import math
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

BOOST_MODES = ("add", "multiply")
DEFAULT_MAX_PER_GENRE = 3


@dataclasses.dataclass
class Candidate:
  item_id: str
  retrieval_rank: int  # 1-based position in the retrieval model's answer
  retrieval_score: float
  ranking_score: float = math.nan
  final_score: float = math.nan
  title: str = ""
  genre: Optional[str] = None  # primary genre; None when unknown
  rules: List[str] = dataclasses.field(default_factory=list)

  @property
  def base_score(self) -> float:
    """What the rules start from: the ranking score, or without a ranker the retrieval
    score."""
    return self.retrieval_score if math.isnan(self.ranking_score) else self.ranking_score

  def to_dict(self) -> dict:
    return {"item_id": self.item_id, "title": self.title, "genre": self.genre,
            "retrieval_rank": self.retrieval_rank,
            "retrieval_score": round(float(self.retrieval_score), 6),
            "ranking_score": (None if math.isnan(self.ranking_score)  # no ranker live
                              else round(float(self.ranking_score), 6)),
            "final_score": round(float(self.final_score), 6), "rules": list(self.rules)}


@dataclasses.dataclass(frozen=True)
class RulesConfig:
  drop_seen: bool = True
  max_per_genre: Optional[int] = DEFAULT_MAX_PER_GENRE  # None or 0: no cap
  fresh_boost: float = 0.0  # 0: no boost
  boost_mode: str = "add"
  fresh_items: Optional[FrozenSet[str]] = None  # None: the catalogue's newest-year items

  def __post_init__(self):
    if self.boost_mode not in BOOST_MODES:
      raise ValueError(f"boost_mode must be one of {BOOST_MODES}, got {self.boost_mode!r}")
    if self.max_per_genre is not None and self.max_per_genre < 0:
      raise ValueError(f"max_per_genre must be >= 0 (0 = no cap), got {self.max_per_genre}")
    if self.boost_mode == "multiply" and self.fresh_boost <= -1:
      raise ValueError(f"a multiplicative fresh_boost must be > -1, got {self.fresh_boost}")


def drop_seen(candidates: List[Candidate],
              seen: Iterable[str]) -> Tuple[List[Candidate], int]:
  """(candidates the user has not seen, how many were dropped)."""
  seen = seen if isinstance(seen, (set, frozenset)) else set(seen)
  if not seen:
    return list(candidates), 0
  kept = [c for c in candidates if c.item_id not in seen]
  return kept, len(candidates) - len(kept)


def boost_fresh(candidates: List[Candidate], fresh: FrozenSet[str], boost: float,
                mode: str = "add") -> int:
  """Sets every final score (the base score, boosted for fresh items); returns how many
  were boosted."""
  boosted = 0
  for c in candidates:
    c.final_score = c.base_score
    if boost and c.item_id in fresh:
      if mode == "add":
        c.final_score = c.base_score + boost
        c.rules.append(f"fresh_boost(+{boost:g})")
      else:
        c.final_score = c.base_score * (1 + boost)
        c.rules.append(f"fresh_boost(x{1 + boost:g})")
      boosted += 1
  return boosted


def order(candidates: List[Candidate]) -> List[Candidate]:
  """Best first: final score, then base score, then retrieval rank (deterministic)."""
  return sorted(candidates, key=lambda c: (-c.final_score, -c.base_score, c.retrieval_rank))


def cap_per_genre(ordered: List[Candidate],
                  max_per_genre: Optional[int]) -> Tuple[List[Candidate], int]:
  """Keeps at most max_per_genre items per primary genre, in the given order."""
  if not max_per_genre:
    return list(ordered), 0
  counts: Dict[str, int] = {}
  kept = []
  for c in ordered:
    if c.genre is not None:
      if counts.get(c.genre, 0) >= max_per_genre:
        continue
      counts[c.genre] = counts.get(c.genre, 0) + 1
    kept.append(c)
  return kept, len(ordered) - len(kept)


def rerank(ranked: List[Candidate], k: int, config: RulesConfig,
           fresh: FrozenSet[str] = frozenset()) -> Tuple[List[Candidate], Dict[str, int]]:
  """Steps 2-5 on ranked candidates (step 1, drop_seen, runs before ranking): (the top
  k, {rule: how many items it boosted or removed}). `fresh` is the fresh set used when
  config.fresh_items is None."""
  fresh_set = config.fresh_items if config.fresh_items is not None else fresh
  boosted = boost_fresh(ranked, fresh_set, config.fresh_boost, config.boost_mode)
  kept, capped = cap_per_genre(order(ranked), config.max_per_genre)
  return kept[:k], {"fresh_boost": boosted, "genre_cap": capped}
