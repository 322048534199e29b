"""`recsys metadata runs | models | lineage MODEL_ID | artifacts --type T` [--json].

Reads the SQLite store of a local run (--metadata FILE, or --pipeline-root DIR for
DIR/metadata.sqlite; default runs/demo/metadata.sqlite) or a MySQL store
(--mysql-config FILE with host, port, database, user, password). Hooked into
cli/cli.py by `add_commands(sub)`.
"""
import argparse
import json
import os
import sys
import textwrap
from typing import Any, Dict, List, Sequence

DEFAULT_METADATA = os.path.join("runs", "demo", "metadata.sqlite")


def add_commands(subparsers) -> None:
  parser = subparsers.add_parser("metadata", help="inspect ML Metadata: runs, models, "
                                                  "lineage, artifacts")
  sub = parser.add_subparsers(dest="metadata_command", required=True)
  runs = sub.add_parser("runs", help="each pipeline run: when, the spans it ingested, status (COMPLETE, RUNNING, "
                                     "FAILED or ABANDONED: interrupted), components")
  models = sub.add_parser("models", help="every trained model: blessed, metrics, pushed, live")
  lineage = sub.add_parser("lineage", help="what produced a model (walks MLMD backwards)")
  lineage.add_argument("model_id", type=int, help="a Model artifact id (see `models`)")
  artifacts = sub.add_parser("artifacts", help="artifacts of one type")
  artifacts.add_argument("--type", required=True, dest="type_name",
                         help="artifact type, e.g. Model, Examples, ModelEvaluation")
  for command, func in ((runs, _runs), (models, _models), (lineage, _lineage),
                        (artifacts, _artifacts)):
    _store_args(command)
    command.add_argument("--json", action="store_true", help="print JSON for scripts")
    command.set_defaults(func=func)


def _store_args(parser: argparse.ArgumentParser) -> None:
  where = parser.add_mutually_exclusive_group()
  where.add_argument("--metadata", help=f"SQLite MLMD file (default {DEFAULT_METADATA})")
  where.add_argument("--pipeline-root", help="a local run's pipeline root (its metadata.sqlite)")
  where.add_argument("--mysql-config", help="YAML/JSON: host, port, database, user, password")


def _sqlite_path(args) -> str:
  if args.pipeline_root:
    return os.path.join(args.pipeline_root, "metadata.sqlite")
  return args.metadata or DEFAULT_METADATA


def _snapshot(args):
  os.environ.setdefault("GLOG_minloglevel", "3")  # MLMD's C++ log would repeat our error
  from recsys_tfx.pipeline import metadata
  if args.mysql_config:
    store = metadata.connect_mysql(metadata.read_mysql_config(args.mysql_config))
  else:
    store = metadata.connect_sqlite(_sqlite_path(args))
  return metadata.snapshot(store)


def _in_progress(args):
  """Whether a local run is going on in the store's pipeline root; None for MySQL."""
  if args.mysql_config:
    return None
  from recsys_tfx.pipeline import run_state
  return run_state.run_in_progress(os.path.dirname(os.path.abspath(_sqlite_path(args))))


def _command(render):
  """Opens the store, runs the query, prints JSON or the table; errors in one line."""
  def run(args) -> int:
    from recsys_tfx.pipeline.metadata import MetadataError
    try:
      result, text = render(args, _snapshot(args))
    except MetadataError as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    print(json.dumps(result, indent=2, default=str) if args.json else text)
    return 0
  return run


def table(headers: Sequence[str], rows: List[Sequence[Any]]) -> str:
  cells = [[str(c) for c in headers]] + [["" if c is None else str(c) for c in r] for r in rows]
  widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
  return "\n".join([lines[0], "  ".join("-" * w for w in widths)] + lines[1:])


@_command
def _runs(args, snap):
  from recsys_tfx.pipeline import metadata
  result = metadata.runs(snap, _in_progress(args))
  rows = [[r["run_id"], r["pipeline"], r["status"], r["started"], r["finished"],
           len(r["components"]) - len(r["cached"]), len(r["cached"]), len(r["not_run"]),
           r["spans"] or "-"]
          for r in result]
  text = table(["run", "pipeline", "status", "started", "finished", "ran", "cached",
                "not run", "spans"], rows)
  for r in result:  # which components: too long for a column
    text += f"\n\nrun {r['run_id']}:\n" + textwrap.fill(
        _components(r), width=96, initial_indent="  ", subsequent_indent="  ")
  return result, text if result else "no pipeline runs recorded"


def _components(run: Dict[str, Any]) -> str:
  parts = [c["component"] + ("" if c["state"] == "COMPLETE" else f" ({c['state']})")
           for c in run["components"]]
  parts += [f"{n} (not run)" for n in run["not_run"]]
  return ", ".join(parts)


@_command
def _models(args, snap):
  from recsys_tfx.pipeline import metadata
  result = metadata.models(snap)
  lines = []
  for m in result:
    blessed = "n/a" if m["blessed"] is None else ("yes" if m["blessed"] else "no")
    pushed = f"{m['model_name']}/{m['pushed_version']}" if m["pushed"] else "no"
    lines.append([m["id"], m["trainer"], m["run_id"], blessed, pushed,
                  "LIVE" if m["live"] else ""])
  text = table(["model", "trainer", "run", "blessed", "pushed", "live"], lines)
  for m in result:  # key metrics under the table: too many to fit in a column
    if m["metrics"]:
      text += f"\n\nmodel {m['id']} ({m['trainer']}) metrics:\n" + "\n".join(
          f"  {k:<36} {v:.4f}" for k, v in m["metrics"].items())
    if m["reasons"]:
      text += f"\n\nmodel {m['id']} ({m['trainer']}) not blessed: " + "; ".join(m["reasons"])
  text += "\n\nlive stages:\n" + "\n".join(
      f"  {stage:<12} {what}" for stage, what in metadata.stages(result).items())
  text += f"\n  {'recommender':<12} {metadata.recommender(snap)}"
  return result, text if result else "no Model artifacts recorded"


@_command
def _lineage(args, snap):
  from recsys_tfx.pipeline import metadata
  result = metadata.lineage(snap, args.model_id)
  model = result["model"]
  out = [f"Model {model['id']} from {model['producer']} (run {model['run_id']}): {model['uri']}"]
  for d in result["data"]:
    out.append(f"  data:            Examples {d['id']} span {d['span']} from {d['input_base']}"
               f" ({d['input_fingerprint']})")
    if d["spans"]:
      out.append(f"  spans:           {d['spans']}: " + ", ".join(
          f"{n} {p}" for n, p in d["span_paths"].items()))
  for s in result["schema"]:
    out.append(f"  schema:          Schema {s['id']} by {s['producer']}: {s['uri']}")
  for t in result["transform_graph"]:
    out.append(f"  transform graph: TransformGraph {t['id']} by {t['producer']}: {t['uri']}")
  for e in result["evaluations"]:
    head = ", ".join(f"{k}={v:.4f}" for k, v in list(e["metrics"].items())[:4])
    out.append(f"  evaluation:      ModelEvaluation {e['id']} by {e['producer']}"
               + (f": {head}" if head else ""))
  for b in result["blessings"]:
    out.append(f"  blessing:        ModelBlessing {b['id']} by {b['producer']}: "
               f"blessed={b['properties'].get('blessed')}")
  for p in result["pushes"]:
    out.append(f"  push:            PushedModel {p['id']}: "
               + (p["destination"] if p["pushed"] else "not pushed"))
  out.append("\nsteps, from the model backwards:")
  for step in result["steps"]:
    props = "".join(f"\n      {k}: {v}" for k, v in step["properties"].items())
    out.append(f"  {step['component']} (execution {step['execution_id']}, {step['state']})"
               + props)
    out += [f"    <- {i['key']}: {i['type']} {i['id']} from {i['producer'] or '?'}"
            for i in step["inputs"]]
  return result, "\n".join(out)


@_command
def _artifacts(args, snap):
  from recsys_tfx.pipeline import metadata
  result = metadata.artifacts(snap, args.type_name)
  rows = [[a["id"], a["producer"], a["run_id"], a["created"], a["state"], a["uri"]]
          for a in result]
  return result, table(["id", "producer", "run", "created", "state", "uri"], rows)
