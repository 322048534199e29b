"""The recommend call, over gRPC: retrieve -> (rank) -> re-rank with business rules.

  1. retrieval  one Predict to the retrieval model (candidates_with_context, or
                candidates_with_history when a history is given and the model reads one):
                the union of its sources' top-K, in the retrieval order (the primary
                source's score), each with every source's score and rank. Models exported
                before there were sources answer recommend_with_* instead.
  2. ranking    items the user has seen are dropped, then one batched Predict to the
                ranking model, one row per remaining candidate, with its sources' scores
                and ranks; only when the ranking stage is live (below), else the
                candidates keep the retrieval order.
  3. rules      serving/rules.py: fresh boost, order by final score, genre cap, top k.

The ranking stage is live when a ranking model is served and it was trained for the
candidate sources the served retrieval model has (both models say which, in their
candidate_sources signature). A ranker is pushed only when it beat the retrieval order
on held-out data, so when none is served the retrieval order is what users get; which
stages are live, and why, is in every Recommendation (`stages`), checked again every
STAGE_CHECK_SECONDS.

k must be in 1..min(candidates, what retrieval returns); anything else is a FunnelError,
not a silently shorter list. The rules may still return fewer than k items (a user who
has seen nearly everything; too few genres for the cap).

Cold start needs nothing special: the models map an unknown user id to their "unknown
user" embedding (both were trained with ids masked to unknown), and an unknown user has
seen nothing.
"""
import dataclasses
import threading
import time
from typing import TYPE_CHECKING, Dict, FrozenSet, Iterable, List, Mapping, Optional, Sequence

import numpy as np

from recsys_tfx.serving import rules as rule_lib
from recsys_tfx.serving.catalogue import Catalogue

if TYPE_CHECKING:  # the client imports TensorFlow; the funnel itself needs none
  from recsys_tfx.serving.client import PredictionClient

DEFAULT_CANDIDATES = 1000  # at most this many of what retrieval returns are ranked
STAGE_CHECK_SECONDS = 5.0


class FunnelError(ValueError):
  """A request the funnel cannot answer as asked (k out of range)."""


@dataclasses.dataclass(frozen=True)
class FunnelConfig:
  candidates: int = DEFAULT_CANDIDATES
  rules: rule_lib.RulesConfig = rule_lib.RulesConfig()

  def __post_init__(self):
    if self.candidates < 1:
      raise ValueError(f"candidates must be >= 1, got {self.candidates}")


@dataclasses.dataclass(frozen=True)
class Stages:
  """Which models answer, and whether the ranking stage is live and why (not)."""
  retrieval: str  # e.g. "retrieval v1796 (primary sasrec; sources sasrec, transitions)"
  ranking_live: bool
  ranking: str  # e.g. "ranking v1797 re-orders the candidates" or "off: ..."

  def to_dict(self) -> dict:
    return {"retrieval": self.retrieval, "ranking": self.ranking,
            "ranking_live": self.ranking_live}


@dataclasses.dataclass
class Recommendation:
  user_id: str
  context: Dict[str, object]
  items: List[rule_lib.Candidate]
  retrieved: int  # distinct candidates retrieval returned (at most config.candidates)
  ranked: int  # candidates the ranker scored (retrieved minus seen); 0 when it is off
  rule_counts: Dict[str, int]  # {"seen": dropped, "fresh_boost": boosted, "genre_cap": dropped}
  timings_ms: Dict[str, float]
  stages: Optional[Stages] = None

  def to_dict(self) -> dict:
    return {"user_id": self.user_id, "context": self.context,
            "items": [c.to_dict() for c in self.items], "retrieved": self.retrieved,
            "ranked": self.ranked, "rules": self.rule_counts,
            "stages": self.stages.to_dict() if self.stages else None,
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()}}


def check_k_within_retrieved(k: int, retrieved: int) -> None:
  if k > retrieved:
    raise FunnelError(f"k={k} exceeds the {retrieved} candidates the retrieval model returns "
                      "(its trainer.top_k; export with a larger top_k for more)")


class Funnel:
  """Retrieval (+ ranking when live) over one PredictionClient, then the rules.
  Thread-safe if the client is (PredictionClient is)."""

  def __init__(self, client: "PredictionClient", catalogue: Optional[Catalogue] = None,
               config: FunnelConfig = FunnelConfig(), rank: bool = True):
    self.client = client
    self.catalogue = catalogue or Catalogue({})
    self.config = config
    self.rank = rank  # False: always the retrieval order (e.g. to measure it)
    self._fresh: FrozenSet[str] = self.catalogue.newest_items()
    self._stages: Optional[Stages] = None
    self._checked = -np.inf
    self._lock = threading.Lock()

  def check_k(self, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
      raise FunnelError(f"k must be a positive integer, got {k!r}")
    if k > self.config.candidates:
      raise FunnelError(f"k={k} exceeds the {self.config.candidates} candidates the funnel "
                        "retrieves (raise the number of candidates)")

  def stages(self) -> Stages:
    """The live stages, checked at most every STAGE_CHECK_SECONDS."""
    with self._lock:
      if self._stages is None or time.monotonic() - self._checked > STAGE_CHECK_SECONDS:
        self._stages = self._check_stages()
        self._checked = time.monotonic()
      return self._stages

  def _check_stages(self) -> Stages:
    client = self.client
    version = client.available_version(client.retrieval_model)
    sources = client.sources(client.retrieval_model)
    retrieval = f"{client.retrieval_model} v{version}" + (
        f" (sources {', '.join(sources)})" if sources else "")
    if not self.rank:
      return Stages(retrieval, False, "off: asked for the retrieval order")
    ranking_version = client.available_version(client.ranking_model)
    if ranking_version is None:
      return Stages(retrieval, False, f"off: no {client.ranking_model} model is served (a "
                    "ranker is pushed only when it beats the retrieval order), so the "
                    "retrieval order is served")
    trained_for = client.sources(client.ranking_model)
    if trained_for != sources:
      return Stages(retrieval, False, f"off: {client.ranking_model} v{ranking_version} was "
                    f"trained for candidate sources {trained_for}, the retrieval model "
                    f"serves {sources}; the retrieval order is served")
    return Stages(retrieval, True,
                  f"{client.ranking_model} v{ranking_version} re-orders the candidates")

  def _candidates(self, item_ids: List[str], scores, source_scores, source_ranks):
    """(rule Candidates, their sources' scores, ranks), duplicates and padding dropped."""
    out, rows, known = [], [], set()
    for rank, (item_id, score) in enumerate(zip(item_ids, scores), start=1):
      if not item_id or item_id in known:  # padding, or ScaNN repeating on tiny catalogues
        continue
      known.add(item_id)
      rows.append(rank - 1)
      item = self.catalogue.item(item_id)
      out.append(rule_lib.Candidate(item_id, rank, float(score),
                                    title=item.title if item else "",
                                    genre=item.primary_genre if item else None))
    pick = (lambda a: None if a is None else np.asarray(a, np.float32)[rows])
    return out, pick(source_scores), pick(source_ranks)

  def recommend(self, user_id: str, k: int = 10,
                context: Optional[Mapping[str, object]] = None,
                seen: Optional[Iterable[str]] = None,
                history: Optional[Sequence[str]] = None) -> Recommendation:
    """Top k for one user. `seen` defaults to the catalogue's record of the user.
    `history` (item ids, oldest first) is what a retrieval model that reads history reads
    instead of the user's stored history; its items count as seen."""
    self.check_k(k)
    context = dict(context or {})
    seen = self.catalogue.seen(user_id) if seen is None else frozenset(seen)
    seen = seen | frozenset(history or ())
    started = time.perf_counter()

    # Each model gets the context it takes (a ranker may use fewer features).
    stages = self.stages()
    self.client.check_context(context, ranking=stages.ranking_live)
    found = self.client.candidates(user_id, context, strict=False, history=history)
    retrieval_done = time.perf_counter()
    check_k_within_retrieved(k, len(found.item_ids))
    limit = self.config.candidates
    candidates, source_scores, source_ranks = self._candidates(
        found.item_ids[:limit], found.scores[:limit],
        None if found.source_scores is None else found.source_scores[:limit],
        None if found.source_ranks is None else found.source_ranks[:limit])
    retrieved = len(candidates)
    counts = {"seen": 0}
    if self.config.rules.drop_seen:
      kept = [i for i, c in enumerate(candidates) if c.item_id not in seen]
      counts["seen"] = len(candidates) - len(kept)
      candidates = [candidates[i] for i in kept]
      if source_scores is not None:
        source_scores, source_ranks = source_scores[kept], source_ranks[kept]

    ranking_started = time.perf_counter()
    ranked = 0
    if stages.ranking_live and candidates:
      ranking_scores = self.client.score(user_id, [c.item_id for c in candidates], context,
                                         strict=False, source_scores=source_scores,
                                         source_ranks=source_ranks)
      for candidate, score in zip(candidates, ranking_scores):
        candidate.ranking_score = float(score)
      ranked = len(candidates)
    ranking_done = time.perf_counter()

    items, rule_counts = rule_lib.rerank(candidates, k, self.config.rules, self._fresh)
    done = time.perf_counter()
    timings = {"retrieval": retrieval_done - started, "ranking": ranking_done - ranking_started,
               "rules": (ranking_started - retrieval_done) + (done - ranking_done),
               "total": done - started}
    return Recommendation(user_id, context, items, retrieved, ranked,
                          {**counts, **rule_counts},
                          {name: seconds * 1000 for name, seconds in timings.items()}, stages)
