"""`recsys benchmark`: the leaderboard from the command line."""
import os
import sys

from recsys_tfx.leaderboard import run as leaderboard_run
from recsys_tfx.trainer import registry


def _benchmark(args) -> int:
  from recsys_tfx.components.ingest import sources
  from recsys_tfx.schema.canonical import DataError
  try:
    models = leaderboard_run.parse_models(args.models)
    settings = leaderboard_run.parse_settings(args.set or [])
    data = sources.load_source(args.data, synthetic_interactions=args.synthetic_interactions,
                               seed=args.seed)
    rows = leaderboard_run.run(data, models, seed=args.seed, settings=settings,
                               verbose=args.verbose)
  except (DataError, ValueError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  out_dir = args.out or os.path.join("runs", "benchmark", data.name)
  paths = leaderboard_run.write(rows, out_dir, {
      "data": args.data, "dataset": data.name, "seed": args.seed, "models": models,
      "settings": settings, "protocol": "per-user time-ordered leave-last-out; fit on all "
      "but each user's last interaction; full catalogue excludes the user's fit items; "
      "sampled = 100 uniform negatives the user never touched"})
  print("\nLeaderboard (held-out item = each user's last interaction; 'full catalogue' ranks "
        "it among every item the user has not seen; 'sampled' among 100 random unseen "
        "items):")
  print(leaderboard_run.table(rows))
  print(leaderboard_run.verdict(rows))
  print(f"wrote {paths['csv']}, {paths['json']}, {paths['png']}")
  return 0


def add_commands(sub) -> None:
  bench = sub.add_parser(
      "benchmark", help="train many retrieval models on one time split: a leaderboard")
  bench.add_argument("--data", default="synthetic",
                     help="synthetic[:<n>] | movielens:<dir> | csv:<file or dir>")
  bench.add_argument("--models", default=",".join(registry.LEADERBOARD_DEFAULT),
                     help=f"comma-separated, from: {', '.join(registry.MODELS)}")
  bench.add_argument("--set", action="append", metavar="MODEL.PARAM=VALUE",
                     help="a model's constructor argument, e.g. sasrec.epochs=5 (repeatable)")
  bench.add_argument("--synthetic-interactions", type=int, help="size of the synthetic world")
  bench.add_argument("--seed", type=int, default=0)
  bench.add_argument("--out", help="output directory (default runs/benchmark/<dataset>)")
  bench.add_argument("--verbose", action="store_true", help="per-epoch progress lines")
  bench.set_defaults(func=_benchmark)
