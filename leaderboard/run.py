"""Trains a list of models on one split and ranks them: the leaderboard.

Every row uses the same split (trainer/models/protocol.py), the same seed, the same
held-out items and the same sampled negatives. Output: a printed table, and
leaderboard.csv / leaderboard.json / leaderboard.png in the output directory.
"""
from __future__ import annotations

import dataclasses
import inspect
import json
import os
import time
from typing import Dict, List, Sequence

import numpy as np
import pandas as pd

from recsys_tfx.leaderboard import scoring
from recsys_tfx.trainer import metrics, registry
from recsys_tfx.trainer.models import protocol

COLUMNS = ("model", "hr@10", "ndcg@10", "sampled_hr@10", "sampled_ndcg@10", "fit_seconds",
           "parameters")


@dataclasses.dataclass
class Row:
  model: str
  hr: float
  ndcg: float
  sampled_hr: float
  sampled_ndcg: float
  fit_seconds: float
  parameters: int

  def values(self) -> tuple:
    return (self.model, self.hr, self.ndcg, self.sampled_hr, self.sampled_ndcg,
            self.fit_seconds, self.parameters)


def parse_models(text: str) -> List[str]:
  names = [n.strip() for n in text.split(",") if n.strip()]
  unknown = [n for n in names if n not in registry.MODELS]
  if unknown or not names:
    raise ValueError(f"unknown model(s) {unknown or text!r}: choose from "
                     f"{', '.join(registry.MODELS)}")
  return list(dict.fromkeys(names))


def parse_settings(pairs: Sequence[str]) -> Dict[str, Dict[str, object]]:
  """["sasrec.epochs=5", "mf.loss=softmax"] -> {"sasrec": {"epochs": 5}, "mf": {...}}."""
  out: Dict[str, Dict[str, object]] = {}
  for pair in pairs:
    key, sep, value = pair.partition("=")
    model, dot, param = key.partition(".")
    if not sep or not dot or not param:
      raise ValueError(f"--set {pair!r}: expected <model>.<parameter>=<value>")
    if model not in registry.MODELS:
      raise ValueError(f"--set {pair!r}: unknown model {model!r}")
    out.setdefault(model, {})[param] = _literal(value)
  return out


def _literal(value: str):
  for cast in (int, float):
    try:
      return cast(value)
    except ValueError:
      pass
  return {"true": True, "false": False}.get(value.lower(), value)


def build_model(name: str, schema_name: str, settings: Dict[str, object],
                verbose: bool) -> protocol.Recommender:
  factory = registry.model_class(name)
  kwargs = dict(settings)
  if name == "two_tower":
    kwargs["schema_name"] = schema_name
  if "verbose" in inspect.signature(factory).parameters:
    kwargs["verbose"] = verbose
  try:
    return factory(**kwargs)
  except TypeError as e:
    raise ValueError(f"--set for {name}: {e}") from None


def evaluate(name: str, model: protocol.Recommender, split: protocol.Split,
             negatives: np.ndarray, seed: int) -> Row:
  start = time.time()
  model.fit(split, seed=seed)
  fit_seconds = time.time() - start
  ranks = scoring.rank_rows(split, model, negatives)
  k = scoring.K
  return Row(name, metrics.hit_rate(ranks.full, k), metrics.ndcg(ranks.full, k),
             metrics.hit_rate(ranks.sampled, k), metrics.ndcg(ranks.sampled, k), fit_seconds,
             model.num_parameters())


def run(data, model_names: Sequence[str], seed: int = 0,
        settings: Dict[str, Dict[str, object]] | None = None, verbose: bool = True,
        log=print) -> List[Row]:
  """Fits and scores each model in turn on `data`'s time split."""
  settings = settings or {}
  split = protocol.make_split(data, seed=seed)
  negatives = scoring.sampled_negatives(split, seed=seed)
  log(f"{data.name}: {split.n_users} users, {split.n_items} items, {len(split.fit_items):,} "
      f"fit interactions, {len(split.test_users)} held-out (each user's last)")
  rows = []
  for i, name in enumerate(model_names, 1):
    log(f"[{i}/{len(model_names)}] {name}: fitting ...")
    model = build_model(name, data.schema_name, settings.get(name, {}), verbose)
    row = evaluate(name, model, split, negatives, seed)
    log(f"[{i}/{len(model_names)}] {name}: HR@10 {row.hr:.4f}  NDCG@10 {row.ndcg:.4f}  "
        f"(fit {row.fit_seconds:.0f}s)")
    rows.append(row)
  return rows


def frame(rows: Sequence[Row]) -> pd.DataFrame:
  return pd.DataFrame([r.values() for r in rows], columns=COLUMNS)


def table(rows: Sequence[Row]) -> str:
  """The leaderboard, best full-catalogue NDCG@10 first."""
  ordered = sorted(rows, key=lambda r: -r.ndcg)
  lines = [f"{'':<12} {'full catalogue':^19} {'sampled (100 neg.)':^19}",
           f"{'model':<12} {'HR@10':>9} {'NDCG@10':>9} {'HR@10':>9} {'NDCG@10':>9} "
           f"{'fit s':>7} {'params':>11}"]
  for r in ordered:
    lines.append(f"{r.model:<12} {r.hr:>9.4f} {r.ndcg:>9.4f} {r.sampled_hr:>9.4f} "
                 f"{r.sampled_ndcg:>9.4f} {r.fit_seconds:>7.0f} {r.parameters:>11,}")
  return "\n".join(lines)


def verdict(rows: Sequence[Row]) -> str:
  """Who wins on full-catalogue NDCG@10, by how much over the runner-up and popularity."""
  ordered = sorted(rows, key=lambda r: -r.ndcg)
  best = ordered[0]
  parts = [f"best on full-catalogue NDCG@10: {best.model} ({best.ndcg:.4f})"]
  if len(ordered) > 1:
    second = ordered[1]
    parts.append(f"{_relative(best.ndcg, second.ndcg)} over {second.model}")
  popularity = next((r for r in rows if r.model == "popularity"), None)
  if popularity and popularity is not best:
    parts.append(f"{_relative(best.ndcg, popularity.ndcg)} over popularity")
    losers = [r.model for r in rows if r.model != "popularity" and r.ndcg <= popularity.ndcg]
    if losers:
      parts.append(f"no better than popularity: {', '.join(losers)}")
  return "; ".join(parts)


def _relative(a: float, b: float) -> str:
  return f"+{100 * (a - b) / b:.0f}%" if b > 0 else f"+{a - b:.4f}"


def write(rows: Sequence[Row], out_dir: str, meta: Dict[str, object]) -> Dict[str, str]:
  """CSV, JSON (rows + how they were made) and a PNG bar chart; returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  paths = {kind: os.path.join(out_dir, f"leaderboard.{kind}") for kind in ("csv", "json", "png")}
  frame(rows).to_csv(paths["csv"], index=False, float_format="%.5f")
  with open(paths["json"], "w") as f:
    json.dump({**meta, "rows": frame(rows).to_dict("records")}, f, indent=2)
  _plot(rows, paths["png"], str(meta.get("data", "")))
  return paths


def _plot(rows: Sequence[Row], path: str, title: str) -> None:
  import matplotlib
  matplotlib.use("Agg")
  from matplotlib import pyplot as plt
  ordered = sorted(rows, key=lambda r: -r.ndcg)
  names = [r.model for r in ordered]
  fig, axes = plt.subplots(1, 2, figsize=(11, 0.45 * len(rows) + 1.8))
  for ax, (label, values) in zip(axes, (
      ("full catalogue", [(r.hr, r.ndcg) for r in ordered]),
      ("sampled, 100 negatives", [(r.sampled_hr, r.sampled_ndcg) for r in ordered]))):
    y = np.arange(len(names))
    ax.barh(y - 0.2, [v[0] for v in values], 0.4, label="HR@10")
    ax.barh(y + 0.2, [v[1] for v in values], 0.4, label="NDCG@10")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_title(label)
    ax.legend(loc="lower right")
  fig.suptitle(f"Leaderboard: {title} (time-ordered leave-last-out)")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
