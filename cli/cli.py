"""The `recsys` command.

  recsys run --config configs/demo.yaml [--data synthetic|movielens:<dir>|csv:<file>] ...
  recsys serve --model-base serving_models        TF Serving's gRPC API on 127.0.0.1:8500
  recsys recommend --user U [-k 10] [--json]       retrieve -> rank -> re-rank over gRPC
  recsys benchmark --data D --models popularity,ease,sasrec,...   one split, one leaderboard
  recsys evaluate-serving --config C             what the served funnel returns, scored
  recsys report | compare-rankers | metadata ... | kubeflow ... | export-serving-config
"""
from recsys_tfx import env

env.configure()  # before anything below imports TensorFlow

import argparse  # noqa: E402

# Each layer registers its own subcommands; none imports TensorFlow until one runs.
from recsys_tfx.kubeflow import cli_commands as kubeflow_cli  # noqa: E402
from recsys_tfx.leaderboard import cli_commands as leaderboard_cli  # noqa: E402
from recsys_tfx.pipeline import cli_commands as pipeline_cli  # noqa: E402
from recsys_tfx.pipeline import metadata_cli  # noqa: E402
from recsys_tfx import serving_quality  # noqa: E402
from recsys_tfx.serving import cli_commands as serving_cli  # noqa: E402


def _run_and_show(args) -> int:
  """`recsys run`: the pipeline, then what the served funnel recommends (over gRPC, from
  the models it pushed), so a run ends where users meet it."""
  code, result = pipeline_cli.run(args)
  if code == 0 and result and result.get("pushed_model"):
    code = serving_cli.show_recommendations(result["serving_dir"], result["data_dir"])
  return code


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(prog="recsys", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  sub = parser.add_subparsers(dest="command", required=True)
  pipeline_cli.add_commands(sub)  # run, report, compare-rankers
  sub.choices["run"].set_defaults(func=_run_and_show)
  serving_cli.add_commands(sub)  # serve, recommend (the gRPC funnel), export-serving-config
  kubeflow_cli.add_commands(sub)
  metadata_cli.add_commands(sub)
  leaderboard_cli.add_commands(sub)  # benchmark
  serving_quality.add_commands(sub)  # evaluate-serving
  return parser


def main(argv=None) -> int:
  args = build_parser().parse_args(argv)
  return args.func(args)


def console_main() -> None:
  """The `recsys` console script: main(), then exit without the interpreter's noisy
  teardown (cli/env.py exit_now)."""
  env.exit_now(main())


if __name__ == "__main__":
  console_main()
