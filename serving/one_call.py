"""The funnel in one Predict: the `recommender` servable (schema/export_contract.py; built
by trainer/funnel_export.py) runs retrieval, the seen filter, the ranker when it is live
and the rules inside one graph, so a recommendation is one round trip, in C++ on real TF
Serving. OneCallFunnel answers like serving/funnel.py's two-call Funnel (same
Recommendation, same items: a test holds them equal) and `recsys recommend` uses it when
a recommender is served.

What it cannot do, and the two-call Funnel can: take a `seen` set other than the one
baked into the servable (every interaction in the data it was composed from, plus a
request's history), keep seen items, use a fresh set other than the catalogue's newest
year, or cut the candidates below all of retrieval's. one_call_unsupported() says which
of those a FunnelConfig asks for.
"""
import threading
import time
from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from recsys_tfx.schema import export_contract as contract
from recsys_tfx.serving import rules as rule_lib
from recsys_tfx.serving.catalogue import Catalogue
from recsys_tfx.serving.funnel import (DEFAULT_CANDIDATES, STAGE_CHECK_SECONDS, Funnel,
                                       FunnelConfig, FunnelError, Recommendation, Stages,
                                       check_k_within_retrieved)

MODEL = contract.RECOMMENDER_MODEL


def one_call_unsupported(config: FunnelConfig) -> Optional[str]:
  """Why the recommender servable cannot answer with this config (None: it can)."""
  if not config.rules.drop_seen:
    return "it always drops seen items"
  if config.rules.fresh_items is not None:
    return "its fresh items are the catalogue's newest year"
  if config.candidates != DEFAULT_CANDIDATES:
    return "it ranks every candidate retrieval returns"
  return None


def _fresh_tag(rules: rule_lib.RulesConfig) -> str:
  return (f"fresh_boost(+{rules.fresh_boost:g})" if rules.boost_mode == "add"
          else f"fresh_boost(x{1 + rules.fresh_boost:g})")


class OneCallFunnel:
  """Funnel.recommend's answer from one Predict to the recommender servable. The
  catalogue only adds titles and genres to the items (the servable has its own tables)."""

  def __init__(self, client, catalogue: Optional[Catalogue] = None,
               config: FunnelConfig = FunnelConfig(), model: str = MODEL):
    why_not = one_call_unsupported(config)
    if why_not:
      raise ValueError(f"the {model} servable cannot answer this request: {why_not} "
                       "(use the two-call funnel)")
    self.client = client
    self.catalogue = catalogue or Catalogue({})
    self.config = config
    self.model = model
    self._stages: Optional[Stages] = None
    self._checked = -np.inf
    self._lock = threading.Lock()

  def check_k(self, k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
      raise FunnelError(f"k must be a positive integer, got {k!r}")

  def composition(self) -> Dict[str, object]:
    """What the served recommender composes: retrieval_version, ranking_version (-1:
    none), ranking_live, ranking (in words)."""
    out = self.client.predict(self.model, {}, contract.COMPOSITION)
    return {name: (value.item().decode() if isinstance(value.item(), bytes) else value.item())
            for name, value in out.items()}

  def stages(self) -> Stages:
    """The live stages, as the served recommender records them (checked at most every
    STAGE_CHECK_SECONDS)."""
    with self._lock:
      if self._stages is None or time.monotonic() - self._checked > STAGE_CHECK_SECONDS:
        version = self.client.available_version(self.model)
        found = self.composition()
        self._stages = Stages(
            f"retrieval v{found['retrieval_version']}, composed into {self.model} "
            f"v{version} (one Predict per recommendation)",
            bool(found["ranking_live"]), found["ranking"])
        self._checked = time.monotonic()
      return self._stages

  def recommend(self, user_id: str, k: int = 10,
                context: Optional[Mapping[str, object]] = None,
                history: Optional[Sequence[str]] = None) -> Recommendation:
    """Top k for one user, as Funnel.recommend (without its `seen`). With `history`, a
    retrieval model that reads history reads it (its items count as seen); otherwise it
    only adds to the seen items, as in the two-call funnel."""
    self.check_k(k)
    context = dict(context or {})
    rules = self.config.rules
    stages = self.stages()
    started = time.perf_counter()
    signature = contract.RECOMMEND
    given = {contract.USER_ID: [user_id]}
    if history is not None and self.client.has_signature(self.model,
                                                         contract.RECOMMEND_WITH_HISTORY):
      signature = contract.RECOMMEND_WITH_HISTORY
      given[contract.HISTORY] = [list(history) or [""]]
    elif history:
      raise ValueError(f"{self.model} does not read history (its retrieval model reads the "
                       "user's stored history); use the two-call funnel to add seen items")
    knobs = {"k": k, "max_per_genre": rules.max_per_genre or 0,
             "fresh_boost": rules.fresh_boost, "boost_mode": rules.boost_mode}
    given.update(knobs)  # scalars, one value for the request
    inputs = self.client.request_inputs(self.model, signature, 1, given, context, strict=True)
    out = self.client.predict(self.model, inputs, signature)
    done = time.perf_counter()
    items = []
    for i, item_id in enumerate(out[contract.ITEM_IDS][0]):
      item_id = item_id.decode() if isinstance(item_id, bytes) else str(item_id)
      if not item_id:
        break
      item = self.catalogue.item(item_id)
      candidate = rule_lib.Candidate(
          item_id, int(out[contract.RETRIEVAL_RANKS][0][i]),
          float(out[contract.RETRIEVAL_SCORES][0][i]),
          ranking_score=float(out[contract.RANKING_SCORES][0][i]),
          final_score=float(out[contract.FINAL_SCORES][0][i]),
          title=item.title if item else "", genre=item.primary_genre if item else None)
      if candidate.final_score != candidate.base_score:  # only the fresh boost changes it
        candidate.rules.append(_fresh_tag(rules))
      items.append(candidate)
    counts = {rule: int(out[name][0]) for rule, name in contract.RULE_COUNTS.items()}
    retrieved = counts.pop("retrieved")
    check_k_within_retrieved(k, retrieved)
    ranked = retrieved - counts["seen"] if stages.ranking_live else 0
    return Recommendation(user_id, context, items, retrieved, ranked, counts,
                          {"total": (done - started) * 1000}, stages)


def choose_funnel(client, catalogue: Optional[Catalogue] = None,
                  config: FunnelConfig = FunnelConfig(), model: str = MODEL,
                  with_history: bool = False):
  """The one-call funnel when `model` is served and can answer this kind of request, else
  the two-call Funnel (which is what a server without a recommender gets)."""
  if (one_call_unsupported(config) is None and client.available_version(model) is not None
      and (not with_history or client.has_signature(model, contract.RECOMMEND_WITH_HISTORY))):
    return OneCallFunnel(client, catalogue, config, model)
  return Funnel(client, catalogue, config)
