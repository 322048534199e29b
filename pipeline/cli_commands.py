"""The pipeline's subcommands of `recsys` (cli/cli.py registers them):

  recsys run --config configs/demo.yaml [--data ...] [--model sasrec] ...
  recsys report [--config ...] [--run RUN_ID]
  recsys compare-rankers [--config ...] [--architectures wide_deep,dcn,deepfm,ncf]
"""
import sys

from recsys_tfx.trainer import registry


def _error(e: Exception) -> int:
  print(f"error: {e}", file=sys.stderr)
  return 2


def run_overrides(args) -> dict:
  """`recsys run`'s options as configs.load overrides (None: keep the config's value)."""
  return {
      "data": args.data, "pipeline_root": args.pipeline_root, "serving_dir": args.serving_dir,
      "synthetic_interactions": args.synthetic_interactions, "seed": args.seed,
      "schema": args.schema, "trainer.epochs": args.epochs,
      "trainer.train_steps": args.train_steps,
      # one model instead of the config's list (which would otherwise win over trainer.model)
      "trainer.models": [args.model] if args.model else None,
  }


def run(args):
  """(exit code, the run's summary or None): `recsys run` without what the cli layer adds
  after it (cli/cli.py shows what the served funnel then recommends)."""
  from recsys_tfx.pipeline import configs, local_runner
  from recsys_tfx.pipeline.run_state import RunInProgress
  from recsys_tfx.schema.canonical import DataError
  try:
    config = configs.load(args.config, run_overrides(args))
    return 0, local_runner.run(config, cache=not args.no_cache, force=args.force)
  except (DataError, configs.ConfigError, RunInProgress) as e:
    return _error(e), None


def _report(args) -> int:
  from recsys_tfx.pipeline import configs, report
  try:
    metadata_path = args.metadata or configs.load(args.config).metadata_path
    report.report(metadata_path, args.run)
  except (ValueError, FileNotFoundError, configs.ConfigError) as e:
    return _error(e)
  return 0


def _compare_rankers(args) -> int:
  from recsys_tfx.pipeline import compare_rankers, configs
  try:
    config = configs.load(args.config, {"ranking.epochs": args.epochs,
                                        "ranking.loss": args.loss,
                                        "pipeline_root": args.pipeline_root})
    results = compare_rankers.compare(config, args.architectures.split(","))
  except (ValueError, FileNotFoundError, configs.ConfigError) as e:
    return _error(e)
  print("\nRankers ordering the same held-out users' candidate lists (the retrieval "
        "model's candidates minus what each user saw before; 'users': over every held-out "
        "user, a list without the held-out item counting as a miss):")
  print(compare_rankers.table(results))
  return 0


def add_commands(sub) -> None:
  run = sub.add_parser("run", help="run the TFX pipeline locally (LocalDagRunner)")
  run.add_argument("--config", help="YAML config file (see configs/demo.yaml)")
  run.add_argument("--data", help="synthetic | movielens:<dir> | csv:<file> | "
                   "spans:<pattern with {SPAN} or {YYYY}{MM}{DD}> (dated spans; see the "
                   "config's data_spans)")
  run.add_argument("--schema", help="schema.pbtxt to use instead of the source's curated one")
  run.add_argument("--pipeline-root", help="where artifacts and MLMD's SQLite file go")
  run.add_argument("--serving-dir", help="where pushed models go (TF Serving layout)")
  run.add_argument("--synthetic-interactions", type=int, help="size of the synthetic world")
  run.add_argument("--seed", type=int)
  run.add_argument("--model", help="train this one retrieval model instead of the config's "
                   "trainer.models: " + " | ".join(registry.RETRIEVAL_MODELS))
  run.add_argument("--epochs", type=int)
  run.add_argument("--train-steps", type=int, help="train this many steps instead of epochs")
  run.add_argument("--no-cache", action="store_true",
                   help="recompute every component; by default a rerun on the same inputs "
                        "reuses the components that finished (an interrupted run resumes)")
  run.add_argument("--force", action="store_true",
                   help="with data: spans:<pattern>, run even when no span is newer than "
                        "the last pushed model's (by default such a run says so and stops "
                        "with exit code 0; data_spans.skip_if_no_new_span: false never "
                        "stops)")
  # cli/cli.py sets func: the run, then the served recommendations

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
  cmp.add_argument("--loss", help="listwise | pointwise (default: the config's)")
  cmp.set_defaults(func=_compare_rankers)
