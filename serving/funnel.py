"""The three-stage recommend call, over gRPC: retrieve -> rank -> re-rank.

  1. retrieval  one Predict to the retrieval model (recommend_with_context): the user's
                top candidates. The model always answers with its own number of them,
                the trainer.top_k it was exported with (100 in configs/demo.yaml), so the
                funnel uses min(config.candidates, that number). To rank 300 candidates,
                export with trainer.top_k: 300.
  2. ranking    items the user has seen are dropped, then one batched Predict to the
                ranking model (serving_default), one row per remaining candidate.
  3. rules      serving/rules.py: fresh boost, order by final score, genre cap, top k.

k must be in 1..min(candidates, the model's top_k); anything else is a FunnelError, not a
silently shorter list. The rules may still return fewer than k items (a user who has
seen nearly everything; too few genres for the cap).

Cold start needs nothing special: the models map an unknown user id to their "unknown
user" embedding (both were trained with ids masked to unknown), and an unknown user has
seen nothing.
"""
import dataclasses
import time
from typing import TYPE_CHECKING, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence

from recsys_tfx.serving import rules as rule_lib
from recsys_tfx.serving.catalogue import Catalogue

if TYPE_CHECKING:  # the client imports TensorFlow; the funnel itself needs none
  from recsys_tfx.serving.client import PredictionClient

DEFAULT_CANDIDATES = 300


class FunnelError(ValueError):
  """A request the funnel cannot answer as asked (k out of range)."""


@dataclasses.dataclass(frozen=True)
class FunnelConfig:
  candidates: int = DEFAULT_CANDIDATES
  rules: rule_lib.RulesConfig = rule_lib.RulesConfig()

  def __post_init__(self):
    if self.candidates < 1:
      raise ValueError(f"candidates must be >= 1, got {self.candidates}")


@dataclasses.dataclass
class Recommendation:
  user_id: str
  context: Dict[str, object]
  items: List[rule_lib.Candidate]
  retrieved: int  # distinct candidates retrieval returned (at most config.candidates)
  ranked: int  # candidates the ranker scored (retrieved minus seen)
  rule_counts: Dict[str, int]  # {"seen": dropped, "fresh_boost": boosted, "genre_cap": dropped}
  timings_ms: Dict[str, float]

  def to_dict(self) -> dict:
    return {"user_id": self.user_id, "context": self.context,
            "items": [c.to_dict() for c in self.items], "retrieved": self.retrieved,
            "ranked": self.ranked, "rules": self.rule_counts,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


class Funnel:
  """Retrieval + ranking over one PredictionClient, then the rules. Thread-safe if the
  client is (PredictionClient is)."""

  def __init__(self, client: "PredictionClient", catalogue: Optional[Catalogue] = None,
               config: FunnelConfig = FunnelConfig()):
    self.client = client
    self.catalogue = catalogue or Catalogue({})
    self.config = config
    self._fresh: FrozenSet[str] = self.catalogue.newest_items()

  def check_k(self, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
      raise FunnelError(f"k must be a positive integer, got {k!r}")
    if k > self.config.candidates:
      raise FunnelError(f"k={k} exceeds the {self.config.candidates} candidates the funnel "
                        "retrieves (raise the number of candidates)")

  def _candidates(self, item_ids: List[str], scores) -> List[rule_lib.Candidate]:
    out, known = [], set()
    for rank, (item_id, score) in enumerate(zip(item_ids, scores), start=1):
      if not item_id or item_id in known:  # ScaNN may pad or repeat on tiny catalogues
        continue
      known.add(item_id)
      item = self.catalogue.item(item_id)
      out.append(rule_lib.Candidate(item_id, rank, float(score),
                                    title=item.title if item else "",
                                    genre=item.primary_genre if item else None))
    return out

  def recommend(self, user_id: str, k: int = 10,
                context: Optional[Mapping[str, object]] = None,
                seen: Optional[Iterable[str]] = None,
                history: Optional[Sequence[str]] = None) -> Recommendation:
    """Top k for one user. `seen` defaults to the catalogue's record of the user.
    `history` (item ids, oldest first) is what a sequential retrieval model reads instead
    of the user's stored history; its items count as seen."""
    self.check_k(k)
    context = dict(context or {})
    seen = self.catalogue.seen(user_id) if seen is None else frozenset(seen)
    seen = seen | frozenset(history or ())
    started = time.perf_counter()

    # Each model gets the context it takes (a ranker may use fewer features).
    self.client.check_context(context)
    item_ids, scores = self.client.retrieve(user_id, context, strict=False, history=history)
    retrieval_done = time.perf_counter()
    if k > len(item_ids):
      raise FunnelError(f"k={k} exceeds the {len(item_ids)} candidates the retrieval model "
                        f"returns (its trainer.top_k; export with a larger top_k for more)")
    candidates = self._candidates(item_ids[:self.config.candidates],
                                  scores[:self.config.candidates])
    retrieved = len(candidates)
    counts = {"seen": 0}
    if self.config.rules.drop_seen:
      candidates, counts["seen"] = rule_lib.drop_seen(candidates, seen)

    ranking_started = time.perf_counter()
    ranking_scores = self.client.score(user_id, [c.item_id for c in candidates], context,
                                       strict=False)
    for candidate, score in zip(candidates, ranking_scores):
      candidate.ranking_score = float(score)
    ranking_done = time.perf_counter()

    items, rule_counts = rule_lib.rerank(candidates, k, self.config.rules, self._fresh)
    done = time.perf_counter()
    timings = {"retrieval": retrieval_done - started, "ranking": ranking_done - ranking_started,
               "rules": (ranking_started - retrieval_done) + (done - ranking_done),
               "total": done - started}
    return Recommendation(user_id, context, items, retrieved, len(candidates),
                          {**counts, **rule_counts},
                          {name: seconds * 1000 for name, seconds in timings.items()})
