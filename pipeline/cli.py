"""The `recsys` command.

  recsys run --config configs/demo.yaml [--data synthetic|movielens:<dir>|csv:<file>] ...
  recsys recommend --user U [--user V ...] [-k 10] [--json]
"""
import argparse
import json
import os
import sys
import warnings

from kubeflow import cli_commands as kubeflow_cli
from pipeline import metadata_cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # C++ INFO..ERROR noise off; Python errors still show
# google-api-core warns on every import that Python 3.10 is old; TFX 1.16 requires it.
os.environ.setdefault("PYTHONWARNINGS", "ignore::FutureWarning")  # Beam worker processes too
warnings.filterwarnings("ignore", category=FutureWarning)


def _run(args) -> int:
  from components.ingest.dataset import DataError
  from pipeline import configs, local_runner
  overrides = {
      "data": args.data, "pipeline_root": args.pipeline_root, "serving_dir": args.serving_dir,
      "synthetic_interactions": args.synthetic_interactions, "seed": args.seed,
      "schema": args.schema, "trainer.epochs": args.epochs,
      "trainer.train_steps": args.train_steps,
  }
  try:
    config = configs.load(args.config, overrides)
    local_runner.run(config)
  except (DataError, configs.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


def newest_version(model_base: str) -> str:
  """TF Serving's rule: the numerically largest version directory is the live one."""
  if not os.path.isdir(model_base):
    raise FileNotFoundError(f"{model_base} does not exist: run `recsys run` (or make demo) first")
  versions = [d for d in os.listdir(model_base) if d.isdigit()]
  if not versions:
    raise FileNotFoundError(f"{model_base} holds no numbered model version")
  return os.path.join(model_base, max(versions, key=int))


def _recommend(args) -> int:
  if args.k <= 0:
    print(f"error: -k must be a positive integer, got {args.k}", file=sys.stderr)
    return 2
  try:
    model_dir = args.model_dir or newest_version(os.path.join(args.serving_dir, "retrieval"))
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  from pipeline import summary
  from trainer import export
  model = export.load_model(model_dir)
  available = int(model.signatures["serving_default"].structured_outputs["item_ids"].shape[-1] or 0)
  if available and args.k > available:
    print(f"error: -k {args.k} exceeds the {available} items the model returns", file=sys.stderr)
    return 2
  results = summary.recommend(model_dir, args.user, k=args.k, model=model)
  if args.json:
    print(json.dumps({"model": model_dir, "recommendations": {
        u: recs for u, recs in zip(args.user, results)}}, indent=2))
  else:
    print(f"model: {model_dir}")
    for user, recs in zip(args.user, results):
      print(f"user {user}:")
      print("\n".join(summary.describe_recommendations(recs, {})))
  return 0


def _report(args) -> int:
  from pipeline import configs, report
  try:
    metadata_path = args.metadata or configs.load(args.config).metadata_path
    report.report(metadata_path, args.run)
  except (ValueError, FileNotFoundError, configs.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  return 0


def _compare_rankers(args) -> int:
  from pipeline import compare_rankers, configs
  try:
    config = configs.load(args.config, {"ranking.epochs": args.epochs,
                                        "ranking.negative_sampling": args.negative_sampling,
                                        "pipeline_root": args.pipeline_root})
    results = compare_rankers.compare(config, args.architectures.split(","))
  except (ValueError, FileNotFoundError, configs.ConfigError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print("\nRankers on the same held-out users ('rerank': the retrieval top-100 minus training "
        "items; 'sampled': vs 100 sampled negatives):")
  print(compare_rankers.table(results))
  return 0


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="recsys", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)

  run = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)")
  run.add_argument("--config", help="YAML config file (see configs/demo.yaml)")
  run.add_argument("--data", help="synthetic | movielens:<dir> | csv:<file>")
  run.add_argument("--schema", help="schema.pbtxt to use instead of the source's curated one")
  run.add_argument("--pipeline-root", help="where artifacts and MLMD's SQLite file go")
  run.add_argument("--serving-dir", help="where pushed models go (TF Serving layout)")
  run.add_argument("--synthetic-interactions", type=int, help="size of the synthetic world")
  run.add_argument("--seed", type=int)
  run.add_argument("--epochs", type=int)
  run.add_argument("--train-steps", type=int, help="train this many steps instead of epochs")
  run.set_defaults(func=_run)

  rep = sub.add_parser("report", help="TFMA metrics of a run: tables and PNG plots")
  rep.add_argument("--config", default="configs/demo.yaml",
                   help="the run's config (its pipeline_root holds ML Metadata)")
  rep.add_argument("--metadata", help="an MLMD SQLite file instead of the config's")
  rep.add_argument("--run", help="pipeline run id (default: the latest)")
  rep.set_defaults(func=_report)

  cmp = sub.add_parser("compare-rankers",
                       help="train every ranking architecture on a finished run's data")
  cmp.add_argument("--config", default="configs/demo.yaml", help="the run's config")
  cmp.add_argument("--architectures", default="wide_deep,dcn,deepfm,ncf")
  cmp.add_argument("--epochs", type=int, help="ranking epochs (default: the config's)")
  cmp.add_argument("--pipeline-root", help="the run's pipeline root (default: the config's)")
  cmp.add_argument("--negative-sampling", help="uniform | popularity | mixed")
  cmp.set_defaults(func=_compare_rankers)

  rec = sub.add_parser("recommend", help="top-K items for users from the pushed model")
  rec.add_argument("--user", action="append", required=True, help="user id (repeatable)")
  rec.add_argument("-k", type=int, default=10)
  rec.add_argument("--json", action="store_true", help="print JSON")
  rec.add_argument("--serving-dir", default="serving_models")
  rec.add_argument("--model-dir", help="a SavedModel directory (default: newest pushed version)")
  rec.set_defaults(func=_recommend)
  kubeflow_cli.add_commands(sub)
  metadata_cli.add_commands(sub)
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  return args.func(args)


if __name__ == "__main__":
  sys.exit(main())
