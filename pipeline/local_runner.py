"""Runs the pipeline on this machine: LocalDagRunner, Beam DirectRunner, MLMD on SQLite.

Order matters for "bad input never half-writes an artifact": the source is read and
validated first, in memory (including whether there is enough of it to evaluate a model);
only then is the pipeline root locked, the canonical copy written (atomically) and the
pipeline started. A run interrupted earlier is resumed (pipeline/run_state.py).

With data: spans:<pattern> the spans to read are resolved first
(components/ingest/spans.py); a run whose newest span the last pushed model was already
trained on stops there, unless data_spans.skip_if_no_new_span is false or it is forced.
"""
import os
import time
from typing import Dict, Optional

from tfx import v1 as tfx

from recsys_tfx.components.ingest import sources, spans
from recsys_tfx.pipeline import configs, progress, run_state, summary
from recsys_tfx.pipeline.pipeline import create_pipeline
from recsys_tfx.schema import canonical as dataset
from recsys_tfx.schema import features as feats
from recsys_tfx.schema import time_split


def check_data_matches_schema(data: dataset.InteractionData, schema_file: str) -> None:
  """Every schema feature must be a column of the source, before any work starts
  (except the slice and history features, which TimeSplitExampleGen computes)."""
  columns = set(data.interactions.columns) | set(data.items.columns)
  if data.users is not None:
    columns |= set(data.users.columns)
  missing = [f.name for f in feats.load_features(schema_file)
             if f.name not in columns and f.role not in ("slice", "history")]
  if missing:
    raise dataset.DataError(
        f"{schema_file}: the schema declares feature(s) {missing} that the data source "
        f"'{data.name}' does not provide (it has {sorted(columns)}); pass a schema that "
        f"matches the data with --schema")


def load_data(config: configs.PipelineConfig,
              resolved: Optional[spans.Resolved] = None) -> dataset.InteractionData:
  if resolved is not None:
    return sources.load_spans(resolved.spans, config.ingest, resolved.pattern)
  return sources.load_source(config.data, synthetic_interactions=config.synthetic_interactions,
                             seed=config.seed, ingest=config.ingest)


def resolve_spans(config: configs.PipelineConfig) -> Optional[spans.Resolved]:
  """The spans this run reads (None when the data is not spans:<pattern>)."""
  if not spans.is_span_source(config.data):
    return None
  # absolute, so what MLMD records names the files wherever it is read from
  resolved = spans.resolve(configs.resolve(spans.pattern_of(config.data)), config.data_spans)
  for skipped in resolved.skipped:
    print(f"  skipped (data_spans.skip_bad_spans): {skipped}", flush=True)
  print(f"  spans {resolved.numbers} (data_spans.window_spans: "
        f"{config.data_spans.window_spans}): " + ", ".join(s.path for s in resolved.spans),
        flush=True)
  return resolved


def no_new_span(config: configs.PipelineConfig, resolved: spans.Resolved) -> Optional[str]:
  """Why this run has nothing new to train on (one line), or None when it has: the
  newest span is no newer than the one the last pushed model was trained on."""
  if not os.path.isfile(config.metadata_path):
    return None
  from recsys_tfx.pipeline import metadata
  pushed = metadata.pushed_spans(metadata.snapshot(metadata.connect_sqlite(
      config.metadata_path)))
  if pushed is None or resolved.newest.number > pushed["span"]:
    return None
  model = pushed["model"]
  return (f"No new span: the newest, {resolved.newest.number} ({resolved.newest.path}), was "
          f"already in the data of the last pushed model {model['id']} "
          f"({model['model_name']}/{model['pushed_version']}, spans {pushed['spans']}); "
          f"stopping (`recsys run --force` runs anyway)")


def check_enough_data(data: dataset.InteractionData, config: configs.PipelineConfig) -> None:
  """Too little data is refused here, saying how much is needed, not minutes into a run."""
  try:
    time_split.check_enough_data(data.interactions[feats.USER_ID],
                                 data.interactions[feats.ITEM_ID],
                                 config.min_interactions_to_hold_out, config.data)
  except ValueError as e:
    raise dataset.DataError(str(e)) from None


def run(config: configs.PipelineConfig, cache: bool = True,
        force: bool = False) -> Dict[str, object]:
  """Runs the pipeline. With `cache` (the default), a rerun of the same command on the
  same inputs (data, schema, config and code) reuses every component that finished, so a
  run that was interrupted resumes where it stopped (pipeline/run_state.py). `force`
  runs even when the spans hold nothing newer than the last pushed model's (a result
  with "stopped_early" otherwise)."""
  start = time.time()
  print(f"Reading and validating {config.data} ...", flush=True)
  resolved = resolve_spans(config)
  if resolved is not None and config.data_spans.skip_if_no_new_span and not force:
    reason = no_new_span(config, resolved)
    if reason:
      print(reason, flush=True)
      return {"stopped_early": reason, "spans": resolved.numbers}
  data = load_data(config, resolved)
  schema_file = config.schema_file(data.schema_name)
  check_data_matches_schema(data, schema_file)
  check_enough_data(data, config)
  with run_state.run_lock(config.pipeline_root):  # the first write under the pipeline root
    data_dir = dataset.write_canonical(data, os.path.join(config.data_dir, data.name),
                                       config.ingest)["dir"]
    dropped = (f" ({data.duplicates_dropped:,} exact duplicate rows dropped)"
               if data.duplicates_dropped else "")
    print(f"  {len(data.interactions):,} interactions{dropped} -> {data_dir} (schema: "
          f"{schema_file})", flush=True)
    for component in run_state.abandon_unfinished(config.metadata_path, config.pipeline_root):
      print(f"  an earlier run was interrupted in {component}: marked abandoned, its partial "
            "output removed", flush=True)
    log_path = progress.install(os.path.join(config.pipeline_root, "logs"))
    reuse = ("reusing components that already finished on the same inputs (--no-cache "
             "recomputes)" if cache else "recomputing every component (--no-cache)")
    print(f"Running the TFX pipeline with LocalDagRunner, {reuse} (full log: {log_path})",
          flush=True)
    pipeline = create_pipeline(
        config, os.path.abspath(data_dir), run_state.pinned_schema(schema_file, config.data_dir),
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            os.path.abspath(config.metadata_path)),
        enable_cache=cache, code_version=run_state.code_version(),
        data_spans=resolved.spans if resolved is not None else None)
    with progress.stderr_to_log(log_path):
      tfx.orchestration.LocalDagRunner().run(pipeline)
  result = summary.print_summary(config, data, time.time() - start)
  result["data_dir"] = data_dir
  result["serving_dir"] = configs.resolve(config.serving_dir)
  if resolved is not None:
    result["spans"] = resolved.numbers
  return result
