"""Every knob of a run, read from a plain YAML file (configs/*.yaml) plus CLI overrides.

A run is reproducible from its config and seed. Unknown keys are errors, not silently
ignored, so a typo never trains a model with defaults the user did not mean.
"""
import dataclasses
import os
from typing import Any, Dict, List, Optional

import yaml

from recsys_tfx.components.ingest import spans
from recsys_tfx.components.ingest.spans import SpanConfig
from recsys_tfx.schema import features as feats
from recsys_tfx.schema.canonical import IngestConfig
from recsys_tfx.schema.time_split import MIN_INTERACTIONS_TO_HOLD_OUT
# The trainer owns its sections' dataclasses; this module composes them.
from recsys_tfx.trainer.config import RankingConfig, TrainerConfig


class ConfigError(ValueError):
  pass


def resolve(path: str) -> str:
  """A local path made absolute; a bucket URI (gs://, s3://, ...) kept as it is."""
  return path if "://" in path else os.path.abspath(path)


@dataclasses.dataclass
class ValidationConfig:
  """Model validation with TFMA (pipeline/model_validation.py says how each knob is used)."""
  metrics: List[str] = dataclasses.field(default_factory=lambda: ["hit_rate", "ndcg", "recall",
                                                                  "map"])
  ks: List[int] = dataclasses.field(default_factory=lambda: [10, 50, 100])
  slices: List[str] = dataclasses.field(default_factory=lambda: ["item_popularity",
                                                                 "user_activity", "daypart"])
  min_hit_rate_lift_at_10: float = 0.005  # HR@10 minus popularity's: popularity itself fails
  thresholds: Dict[str, float] = dataclasses.field(default_factory=dict)  # extra lower bounds
  max_regression: Dict[str, float] = dataclasses.field(
      default_factory=lambda: {"hit_rate@10": 0.01, "ndcg@10": 0.01})  # vs last blessed
  # The ranking stage (components/ranking_gate): the ranker's re-ordering of the retrieval
  # candidates must beat the retrieval order's NDCG@10 by more than this, in [-1, 1] ...
  min_rerank_lift: float = 0.0
  # ... and be no worse than the last blessed ranker's on the same lists, by more than this.
  max_ranking_regression: float = 0.0
  # TFMA reports on the lists of a seeded sample of this many held-out users (0 = all):
  # its per-user metrics hold every candidate in memory (components/ranking_eval_examples).
  ranking_tfma_users: int = 300


@dataclasses.dataclass
class PipelineConfig:
  pipeline_name: str = "recsys"
  data: str = "synthetic"  # synthetic | movielens:<dir> | csv:<file> | spans:<pattern>
  # With data: spans:<pattern> (components/ingest/spans.py): how many of the newest spans
  # a run reads, whether bad spans are skipped, whether a run with no new span stops.
  data_spans: SpanConfig = dataclasses.field(default_factory=SpanConfig)
  synthetic_interactions: int = 60_000
  schema: Optional[str] = None  # a schema.pbtxt; default: the curated one for the source
  seed: int = 0
  pipeline_root: str = "runs/demo"
  serving_dir: str = "serving_models"
  min_interactions_to_hold_out: int = MIN_INTERACTIONS_TO_HOLD_OUT
  beam_args: List[str] = dataclasses.field(default_factory=lambda: [
      "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
  # What input is plausible: timestamp years, id length, duplicates (schema/canonical.py).
  ingest: IngestConfig = dataclasses.field(default_factory=IngestConfig)
  trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
  ranking: RankingConfig = dataclasses.field(default_factory=RankingConfig)
  validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig)

  @property
  def metadata_path(self) -> str:
    return os.path.join(self.pipeline_root, "metadata.sqlite")

  @property
  def data_dir(self) -> str:
    """Where the validated canonical copy of the input is written before the run."""
    return os.path.join(self.pipeline_root, "data")

  def schema_file(self, schema_name: str) -> str:
    return os.path.abspath(self.schema) if self.schema else feats.curated_schema_file(
        schema_name)

  def push_dir(self, model_name: str) -> str:
    """TF Serving's layout: <serving_dir>/<model name>/<version>/."""
    return f"{resolve(self.serving_dir).rstrip('/')}/{model_name}"

  @property
  def history_length(self) -> int:
    """Items of history ExampleGen writes per example: none unless the model reads it."""
    return self.trainer.history_length if self.trainer.reads_history() else 0

  def retrieval_push_dir(self) -> str:
    return self.push_dir("retrieval")


SECTIONS = {"trainer": TrainerConfig, "ranking": RankingConfig,
            "validation": ValidationConfig, "ingest": IngestConfig, "data_spans": SpanConfig}


def build_dataclass(cls, values: Dict[str, Any], where: str, sections=None):
  """cls(**values), refusing unknown keys; `sections` maps keys to nested dataclasses."""
  sections = SECTIONS if sections is None else sections
  fields = {f.name for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - fields)
  if unknown:
    raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
  kwargs = {}
  for name, value in values.items():
    if name in sections:
      value = build_dataclass(sections[name], value or {}, f"{where}: {name}", sections)
    kwargs[name] = value
  return cls(**kwargs)


def read_mapping(path: str) -> Dict[str, Any]:
  """A YAML file whose top level is a mapping, with errors naming the file."""
  if not os.path.exists(path):
    raise ConfigError(f"config file {path} does not exist")
  with open(path) as f:
    values = yaml.safe_load(f) or {}
  if not isinstance(values, dict):
    raise ConfigError(f"{path}: expected a mapping of keys to values at the top level")
  return values


def load(path: Optional[str] = None, overrides: Optional[Dict[str, Any]] = None) -> PipelineConfig:
  values: Dict[str, Any] = {}
  where = path or "defaults"
  if path:
    values = read_mapping(path)
  for key, value in (overrides or {}).items():
    if value is None:
      continue
    section, dot, field = key.partition(".")
    if dot:
      values.setdefault(section, {})[field] = value
    else:
      values[key] = value
  config = build_dataclass(PipelineConfig, values, where)
  validate(config, where)
  return config


def validate(config: PipelineConfig, where: str) -> None:
  checks = [
      (config.synthetic_interactions >= 1000,
       f"synthetic_interactions must be >= 1000, got {config.synthetic_interactions}"),
      (config.validation.ranking_tfma_users >= 0,
       f"validation.ranking_tfma_users must be >= 0, got {config.validation.ranking_tfma_users}"),
      (_number_in(config.validation.min_rerank_lift, -1, 1),
       f"validation.min_rerank_lift must be a number in [-1, 1], got "
       f"{config.validation.min_rerank_lift!r}"),
      (_number_in(config.validation.max_ranking_regression, 0, 1),
       f"validation.max_ranking_regression must be a number in [0, 1], got "
       f"{config.validation.max_ranking_regression!r}"),
      (config.min_interactions_to_hold_out >= MIN_INTERACTIONS_TO_HOLD_OUT,
       f"min_interactions_to_hold_out must be >= {MIN_INTERACTIONS_TO_HOLD_OUT} (train, "
       f"eval, test), got {config.min_interactions_to_hold_out}"),
  ]
  problems = [message for ok, message in checks if not ok]
  problems += config.trainer.problems() + config.ranking.problems() + config.ingest.problems()
  problems += config.data_spans.problems()
  if spans.is_span_source(config.data):
    try:
      spans.check_pattern(spans.pattern_of(config.data))
    except spans.SpanError as e:
      problems.append(f"data: {e}")
  if problems:
    raise ConfigError(f"{where}: {problems[0]}")
  if config.schema and not os.path.exists(config.schema):
    raise ConfigError(f"{where}: schema file {config.schema} does not exist")


def _number_in(value, low: float, high: float) -> bool:
  return not isinstance(value, bool) and isinstance(value, (int, float)) and low <= value <= high


def validate_against_schema(config: PipelineConfig, features, schema_file: str) -> None:
  """Checks that need the schema: features the config names must exist there."""
  from recsys_tfx.pipeline import model_validation  # imports TFMA
  names = {f.name for f in features}
  missing = [n for n in (config.ranking.features or []) if n not in names]
  if missing:
    raise ConfigError(f"ranking.features names {missing}, which {schema_file} lacks; "
                      f"allowed: {sorted(names)}")
  try:
    model_validation.check(config.validation, sorted(names))
  except ValueError as e:
    raise ConfigError(f"{schema_file}: {e}") from None
