"""Runs the pipeline on this machine: LocalDagRunner, Beam DirectRunner, MLMD on SQLite.

Order matters for "bad input never half-writes an artifact": the source is read and
validated first, in memory; only then is its canonical copy written (atomically) and the
pipeline started.
"""
import os
import time
from typing import Dict

from tfx import v1 as tfx

from recsys_tfx.components.ingest import sources
from recsys_tfx.pipeline import configs, progress, summary
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


def run(config: configs.PipelineConfig) -> Dict[str, object]:
  start = time.time()
  print(f"Reading and validating {config.data} ...", flush=True)
  data = load_data(config)
  schema_file = config.schema_file(data.schema_name)
  check_data_matches_schema(data, schema_file)
  check_enough_data(data, config)
  data_dir = dataset.write_canonical(data, os.path.join(config.data_dir, data.name),
                                     config.ingest)["dir"]
  dropped = (f" ({data.duplicates_dropped:,} exact duplicate rows dropped)"
             if data.duplicates_dropped else "")
  print(f"  {len(data.interactions):,} interactions{dropped} -> {data_dir} (schema: "
        f"{schema_file})", flush=True)

  log_path = progress.install(os.path.join(config.pipeline_root, "logs"))
  print(f"Running the TFX pipeline with LocalDagRunner (full log: {log_path})", flush=True)
  os.makedirs(config.pipeline_root, exist_ok=True)
  pipeline = create_pipeline(
      config, os.path.abspath(data_dir), schema_file,
      metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
          os.path.abspath(config.metadata_path)))
  tfx.orchestration.LocalDagRunner().run(pipeline)
  return summary.print_summary(config, data, time.time() - start)
