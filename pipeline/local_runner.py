"""Runs the pipeline on this machine: LocalDagRunner, Beam DirectRunner, MLMD on SQLite.

Order matters for "bad input never half-writes an artifact": the source is read and
validated first, in memory (including whether there is enough of it to evaluate a model);
only then is the pipeline root locked, the canonical copy written (atomically) and the
pipeline started. A run interrupted earlier is resumed (pipeline/run_state.py).
"""
import os
import time
from typing import Dict

from tfx import v1 as tfx

from recsys_tfx.components.ingest import sources
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


def load_data(config: configs.PipelineConfig) -> dataset.InteractionData:
  return sources.load_source(config.data, synthetic_interactions=config.synthetic_interactions,
                             seed=config.seed, ingest=config.ingest)


def check_enough_data(data: dataset.InteractionData, config: configs.PipelineConfig) -> None:
  """Too little data is refused here, saying how much is needed, not minutes into a run."""
  try:
    time_split.check_enough_data(data.interactions[feats.USER_ID],
                                 data.interactions[feats.ITEM_ID],
                                 config.min_interactions_to_hold_out, config.data)
  except ValueError as e:
    raise dataset.DataError(str(e)) from None


def run(config: configs.PipelineConfig, cache: bool = True) -> Dict[str, object]:
  """Runs the pipeline. With `cache` (the default), a rerun of the same command on the
  same inputs (data, schema, config and code) reuses every component that finished, so a
  run that was interrupted resumes where it stopped (pipeline/run_state.py)."""
  start = time.time()
  print(f"Reading and validating {config.data} ...", flush=True)
  data = load_data(config)
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
        enable_cache=cache, code_version=run_state.code_version())
    with progress.stderr_to_log(log_path):
      tfx.orchestration.LocalDagRunner().run(pipeline)
  result = summary.print_summary(config, data, time.time() - start)
  result["data_dir"] = data_dir
  result["serving_dir"] = configs.resolve(config.serving_dir)
  return result
