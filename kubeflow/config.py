"""Where and how the pipeline runs on Kubeflow: configs/kubeflow.yaml.

The pipeline's own knobs (trainer, ranking, seed, ...) stay in the pipeline config it
names (`pipeline_config`, e.g. configs/demo.yaml); this file adds only what a cluster
needs: the image, remote locations, Beam's distributed runner and the schedule.
"""
import dataclasses
import os
from typing import Any, Dict, List, Optional


from recsys_tfx.components.ingest import spans
from recsys_tfx.pipeline import configs
from recsys_tfx.pipeline.configs import ConfigError
from recsys_tfx.schema.features import SCHEMA_DIR

# The folder holding schema/ (the checkout; the Dockerfile copies it to image_repo_root).
REPO_ROOT = os.path.dirname(SCHEMA_DIR)

REMOTE_SCHEMES = ("gs://", "s3://", "hdfs://", "abfs://", "abfss://", "az://", "minio://")


@dataclasses.dataclass
class ScheduleConfig:
  cron: str = "0 3 * * *"  # standard 5-field cron (UTC); see kubeflow/cron.py
  display_name: str = ""  # of the recurring run; default: "<pipeline name>-schedule"
  experiment: str = "Default"
  namespace: str = ""  # multi-user Kubeflow: the profile namespace
  max_concurrency: int = 1
  no_catchup: bool = True  # after a pause, run once instead of replaying every missed slot
  service_account: str = ""
  parameters: Dict[str, Any] = dataclasses.field(default_factory=dict)  # runtime parameters


@dataclasses.dataclass
class KubeflowConfig:
  pipeline_config: str = "configs/demo.yaml"
  image: str = ""
  image_repo_root: str = "/pipeline"  # where the Dockerfile puts this repository
  pipeline_root: str = ""
  data_dir: str = ""  # the canonical data (as `recsys run` writes it) in the bucket
  # Dated spans in the bucket instead: spans:gs://.../{YYYY}-{MM}-{DD} (the pipeline
  # config's data_spans sets the window). Each run's TimeSplitExampleGen then reads the
  # newest span(s) when it runs and writes their canonical copy to data_dir.
  data: str = ""
  serving_dir: str = ""  # pushed models, TF Serving layout: <serving_dir>/<model>/<version>/
  schema: str = "schema/synthetic/schema.pbtxt"  # repo-relative, so it is in the image too
  output: str = "build/kubeflow/pipeline.json"
  beam_args: List[str] = dataclasses.field(default_factory=list)
  schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)

  def local_schema_file(self) -> str:
    return os.path.join(REPO_ROOT, self.schema)

  def image_schema_file(self) -> str:
    return f"{self.image_repo_root.rstrip('/')}/{self.schema}"


def is_remote(path: str) -> bool:
  return path.startswith(REMOTE_SCHEMES)


def load(path: str, overrides: Optional[Dict[str, Any]] = None) -> KubeflowConfig:
  values = configs.read_mapping(path)
  values.update({k: v for k, v in (overrides or {}).items() if v is not None})
  config = configs.build_dataclass(KubeflowConfig, values, path, {"schedule": ScheduleConfig})
  validate(config, path)
  return config


def validate(config: KubeflowConfig, where: str) -> None:
  """Pods cannot see this machine's disk: every location must be a bucket URI."""
  for name in ("pipeline_root", "data_dir", "serving_dir"):
    value = getattr(config, name)
    if not value:
      raise ConfigError(f"{where}: {name} is not set; give a bucket URI (gs://..., s3://...)")
    if not is_remote(value):
      raise ConfigError(
          f"{where}: {name} '{value}' is a local path; Kubeflow pods cannot read this "
          f"machine's disk, so use a bucket URI ({', '.join(REMOTE_SCHEMES[:2])}...)")
  if config.data:
    pattern = config.data.partition(":")[2]
    if not spans.is_span_source(config.data) or not is_remote(pattern):
      raise ConfigError(f"{where}: data '{config.data}' must be spans:<bucket URI pattern>, "
                        f"e.g. spans:gs://my-bucket/input/{{YYYY}}-{{MM}}-{{DD}} (or leave it "
                        f"out: the pipeline reads the canonical copy in data_dir)")
    try:
      spans.check_pattern(pattern)
    except spans.SpanError as e:
      raise ConfigError(f"{where}: data: {e}") from None
  if not config.image:
    raise ConfigError(f"{where}: image is empty; set the pipeline image (see Dockerfile)")
  schema = os.path.normpath(config.schema)
  inside = not os.path.isabs(schema) and not schema.startswith("..")
  if not inside or not os.path.isfile(config.local_schema_file()):
    raise ConfigError(f"{where}: schema '{config.schema}' must be a file inside this "
                      f"repository (it is read at {config.image_schema_file()} in the image)")
  if not 1 <= config.schedule.max_concurrency <= 10:
    raise ConfigError(f"{where}: schedule.max_concurrency must be in 1..10 (KFP's range), "
                      f"got {config.schedule.max_concurrency}")
