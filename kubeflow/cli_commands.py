"""`recsys kubeflow compile | schedule`: the pipeline on a Kubeflow Pipelines cluster.

  recsys kubeflow compile [--config configs/kubeflow.yaml] [--output build/kubeflow/p.json]
  recsys kubeflow schedule --host URL [--cron "0 3 * * *"] [--dry-run] [--spec FILE]

Hooked into cli/cli.py by `add_commands(sub)`.
"""
import argparse
import json
import os
import sys

DEFAULT_CONFIG = "configs/kubeflow.yaml"
TOKEN_ENV = "KFP_TOKEN"  # optional bearer token for clusters behind auth


def add_commands(subparsers) -> None:
  kubeflow = subparsers.add_parser("kubeflow", help="compile / schedule on Kubeflow Pipelines")
  sub = kubeflow.add_subparsers(dest="kubeflow_command", required=True)

  compile_ = sub.add_parser("compile", help="compile the pipeline to a KFP v2 pipeline spec")
  _common(compile_)
  compile_.add_argument("--output", help="spec file to write (.json, or .yaml)")
  compile_.set_defaults(func=_compile)

  schedule = sub.add_parser(
      "schedule", help="upload the spec and create/update a cron recurring run (KFP REST "
                       "API v2beta1)",
      description="Upload the compiled spec and create or update a cron recurring run. "
                  "Nightly runs over dated spans: set `data: spans:gs://.../{YYYY}-{MM}-{DD}` "
                  "in the Kubeflow config (and data_spans.window_spans in the pipeline "
                  "config); each scheduled run's TimeSplitExampleGen then resolves the "
                  "pattern when it runs, reads the newest span(s) (a rolling window of "
                  "window_spans), writes their canonical copy to data_dir and records the "
                  "span numbers on its Examples in ML Metadata. It is never cached, so a "
                  "run never reuses an earlier day's examples. Schedule it after the day's "
                  "span lands, e.g. --cron \"0 3 * * *\" (UTC). Unlike `recsys run`, a "
                  "scheduled run does not stop early when no span is new: it trains, and "
                  "validation decides whether it pushes.")
  _common(schedule)
  schedule.add_argument("--host", required=True, help="KFP API endpoint, e.g. "
                        "http://localhost:8080 (kubectl port-forward svc/ml-pipeline-ui); "
                        "user:password@ in it is sent as basic auth and printed as ***:***")
  schedule.add_argument("--cron", help='standard 5-field cron in UTC, e.g. "0 3 * * *"')
  schedule.add_argument("--experiment", help="KFP experiment (created if missing)")
  schedule.add_argument("--namespace", help="profile namespace on multi-user Kubeflow")
  schedule.add_argument("--spec", help="upload this compiled spec instead of compiling")
  schedule.add_argument("--dry-run", action="store_true",
                        help="print the exact requests (method, URL, body); send nothing")
  schedule.set_defaults(func=_schedule)


def _common(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--config", default=DEFAULT_CONFIG, help="Kubeflow config YAML")
  parser.add_argument("--image", help="pipeline container image (overrides the config)")
  parser.add_argument("--pipeline-root", help="gs:// or s3:// root for artifacts")


def _load(args):
  from recsys_tfx.kubeflow import config as kf_config
  overrides = {"image": args.image, "pipeline_root": args.pipeline_root}
  if getattr(args, "output", None):
    overrides["output"] = args.output
  config = kf_config.load(args.config, overrides)
  for name in ("cron", "experiment", "namespace"):
    value = getattr(args, name, None)
    if value is not None:
      setattr(config.schedule, name, value)
  return config


def _errors():
  from recsys_tfx.kubeflow.compile import CompileError
  from recsys_tfx.kubeflow.cron import CronError
  from recsys_tfx.kubeflow.kfp_api import KfpError
  from recsys_tfx.pipeline.configs import ConfigError
  return (CompileError, CronError, KfpError, ConfigError)


def _fail(e: Exception, host: str = None) -> int:
  message = str(e)
  if host:  # a --host with user:password in it is never printed as given
    from recsys_tfx.kubeflow.kfp_api import redact_text
    message = redact_text(message, host)
  print(f"error: {message}", file=sys.stderr)
  return 2


def _compile(args) -> int:
  from recsys_tfx.kubeflow import compile as kf_compile
  try:
    config = _load(args)
    spec = kf_compile.compile_spec(config)
    kf_compile.write(spec, config.output)
  except _errors() as e:
    return _fail(e)
  tasks = spec["root"]["dag"]["tasks"]
  print(f"compiled {spec['pipelineInfo']['name']}: {len(tasks)} tasks, image {config.image}, "
        f"pipeline root {config.pipeline_root} -> {config.output}")
  return 0


def _read_spec(path: str) -> dict:
  import yaml
  from recsys_tfx.kubeflow.kfp_api import KfpError
  if not os.path.exists(path):
    raise KfpError(f"spec file {path} does not exist: run `recsys kubeflow compile` first")
  with open(path) as f:
    spec = yaml.safe_load(f)  # JSON is YAML too
  if not isinstance(spec, dict) or "pipelineInfo" not in spec or "root" not in spec:
    raise KfpError(f"{path} is not a KFP v2 PipelineSpec (no pipelineInfo/root)")
  return spec


def _schedule(args) -> int:
  from recsys_tfx.kubeflow import cron, kfp_api
  from recsys_tfx.kubeflow import schedule as kf_schedule
  try:
    config = _load(args)
    kfp_api.check_host(args.host)
    cron.to_kfp(config.schedule.cron)  # before the (slow) compile
    if args.spec:
      spec = _read_spec(args.spec)
    else:
      from recsys_tfx.kubeflow import compile as kf_compile
      spec = kf_compile.compile_spec(config)
    token = os.environ.get(TOKEN_ENV)
    if args.dry_run:
      print("# dry run: nothing is sent. Lookups are assumed to find nothing (a first "
            "schedule); ids the server would return are shown as <...>.\n")
      transport = kfp_api.DryRunTransport(args.host, token=token)
    else:
      transport = kfp_api.HttpTransport(args.host, token=token)
    result = kf_schedule.schedule(kfp_api.KfpClient(transport), spec, config.schedule)
  except _errors() as e:
    return _fail(e, args.host)
  if not args.dry_run:
    print(json.dumps({"host": kfp_api.redact(args.host), **result.__dict__}, indent=2))
  return 0
