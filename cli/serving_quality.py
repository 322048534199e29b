"""`recsys evaluate-serving`: recommendation quality measured where users meet it, through
the served API, on the pipeline's own time split.

For every held-out test user it asks the model server (over gRPC, the Funnel that
`recsys recommend` uses) for a top-10 with the user's history as it stood before the
held-out interaction (the train and eval splits' items, which are also the seen filter),
and ranks the held-out item in what comes back:

  retrieval order         the candidates in the retrieval model's order (no ranker, no rules)
  funnel                  the ranking stage where it is live (else the retrieval order)
  funnel + rules          the same with the business rules (genre cap, seen filter)
  popularity              the train split's most popular unseen items
  simple baselines        popularity, ItemKNN, EASE and item transitions, fitted on the
                          train split (as the served models were) and asked with the same
                          history; the best of them on NDCG@10 is the bar to clear

Metrics are HR@10 and NDCG@10 over the full catalogue: an item the served list does not
hold in its top 10 is a miss.
"""
import dataclasses
import json
import os
import sys
import time
from typing import Dict

import numpy as np

from recsys_tfx.leaderboard import scoring
from recsys_tfx.pipeline import configs, summary
from recsys_tfx.schema import canonical
from recsys_tfx.serving import rules as rule_lib
from recsys_tfx.trainer import metrics, registry
from recsys_tfx.trainer.models import protocol

K = 10
BASELINES = registry.BASELINES  # popularity, itemknn, ease, transitions
STAGES = ("retrieval order", "funnel", "funnel + rules")


@dataclasses.dataclass
class HeldOut:
  """The pipeline's split of the run's data: the train split the models were fitted on,
  and each test row's history (train and eval items, time-ordered) and context."""
  train: protocol.Split
  before_test: protocol.Split  # its sequences: what each user did before the test item


def held_out(data, config) -> HeldOut:
  split = lambda fit: protocol.make_split(data, seed=config.seed, fit_splits=fit,
                                          min_to_hold_out=config.min_interactions_to_hold_out)
  return HeldOut(split(("train",)), split(("train", "eval")))


def baseline_ranks(held: HeldOut, seed: int, log=print) -> Dict[str, np.ndarray]:
  """Each simple baseline's 0-based rank of every held-out item (full catalogue minus
  the user's earlier items), fitted on the train split, asked with the earlier items."""
  negatives = np.zeros((len(held.before_test.test_users), 0), np.int64)  # no sampled metric
  out = {}
  for name in BASELINES:
    model = registry.model_class(name)()
    model.fit(held.train, seed=seed)
    out[name] = scoring.rank_rows(held.before_test, model, negatives).full
    log(f"  {name}: NDCG@10 {metrics.ndcg(out[name], K):.4f}")
  return out


def served_ranks(client, catalogue, held: HeldOut, log=print) -> Dict[str, np.ndarray]:
  """The held-out item's rank in each stage's served top 10 (K when absent)."""
  from recsys_tfx.serving.funnel import Funnel, FunnelConfig
  no_cap = rule_lib.RulesConfig(max_per_genre=0)
  funnels = {"retrieval order": Funnel(client, catalogue, FunnelConfig(rules=no_cap), rank=False),
             "funnel": Funnel(client, catalogue, FunnelConfig(rules=no_cap)),
             "funnel + rules": Funnel(client, catalogue, FunnelConfig())}
  split = held.before_test
  context_columns = [c for c in split.test_context.columns]
  ranks = {name: np.full(len(split.test_users), K, np.int64) for name in funnels}
  started = time.time()
  for row, (user, target) in enumerate(zip(split.test_users, split.test_items)):
    history = [str(i) for i in split.item_ids[split.sequences[user]]]
    context = {c: split.test_context[c].iloc[row] for c in context_columns}
    context = {c: (v.item() if hasattr(v, "item") else v) for c, v in context.items()}
    for name, funnel in funnels.items():
      items = funnel.recommend(str(split.user_ids[user]), K, context, seen=history,
                               history=history).items
      served = [c.item_id for c in items]
      if split.item_ids[target] in served:
        ranks[name][row] = served.index(split.item_ids[target])
    if (row + 1) % 500 == 0:
      log(f"  {row + 1:,} / {len(split.test_users):,} users asked ({time.time() - started:.0f}s)")
  return ranks


def table(results: Dict[str, Dict[str, float]], best: str) -> str:
  bar = results[best]["ndcg@10"]
  lines = [f"  {'':<26}{'HR@10':>9}{'NDCG@10':>9}   NDCG@10 vs {best}"]
  for name, values in results.items():
    ratio = values["ndcg@10"] / bar if bar > 0 else float("nan")
    lines.append(f"  {name:<26}{values['hit_rate@10']:>9.4f}{values['ndcg@10']:>9.4f}"
                 f"   {ratio:>6.2f}x")
  return "\n".join(lines)


def evaluate(config, client, log=print) -> Dict[str, object]:
  """The table's figures, through `client` (a PredictionClient on the served models)."""
  from recsys_tfx.serving.catalogue import Catalogue
  store = summary.open_store(config.metadata_path)
  data_dir = summary.latest_data_dir(store)
  data = canonical.read_canonical(data_dir)
  held = held_out(data, config)
  log(f"{len(held.before_test.test_users):,} held-out test users; simple baselines fitted "
      f"on the train split:")
  ranks = baseline_ranks(held, config.seed, log)
  log("asking the served models over gRPC (retrieval order, funnel, funnel + rules):")
  ranks.update(served_ranks(client, Catalogue.from_canonical(data_dir), held, log))
  results = {name: metrics.summarize(ranks[name], ks=(K,)) for name in
             list(STAGES) + list(BASELINES)}
  simple = {name: results[name] for name in BASELINES}
  best = max(simple, key=lambda name: simple[name]["ndcg@10"])
  return {"data": data_dir, "users": int(len(held.before_test.test_users)),
          "results": results, "best_simple_baseline": best,
          "funnel_vs_best": (results["funnel"]["ndcg@10"] / simple[best]["ndcg@10"]
                             if simple[best]["ndcg@10"] > 0 else None)}


def run(args) -> int:
  from recsys_tfx.serving.client import PredictionClient, RequestFailed, ServerUnavailable
  from recsys_tfx.serving.model_server import ModelServer
  try:
    config = configs.load(args.config)
    server = None
    target = args.target
    if target is None:
      base = args.model_base or configs.resolve(config.serving_dir)
      server = ModelServer(base, port=0).start()  # the pushed models, a real gRPC socket
      target = server.address
    try:
      with PredictionClient(target, timeout=60) as client:
        report = evaluate(config, client)
    finally:
      if server is not None:
        server.stop()
  except (configs.ConfigError, canonical.DataError, ValueError, FileNotFoundError,
          OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  except (ServerUnavailable, RequestFailed) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  results = report["results"]
  print(f"\nServed quality on the time split ({report['users']:,} held-out users; full "
        f"catalogue; each user asked with the history before the held-out item):")
  print(table(results, report["best_simple_baseline"]))
  out = args.out or os.path.join(config.pipeline_root, "serving_quality.json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {out}")
  return 0


def add_commands(sub) -> None:
  p = sub.add_parser("evaluate-serving",
                     help="HR/NDCG@10 of what the served funnel returns for every held-out "
                          "user, beside the simple baselines")
  p.add_argument("--config", default="configs/demo.yaml", help="the run's config")
  p.add_argument("--target", help="a running model server (host:port); default: serve the "
                                  "config's serving_dir from this process")
  p.add_argument("--model-base", help="pushed models to serve (default: the config's "
                                      "serving_dir)")
  p.add_argument("--out", help="JSON report (default <pipeline_root>/serving_quality.json)")
  p.set_defaults(func=run)

