"""Every knob of a run, read from a plain YAML file (configs/*.yaml) plus CLI overrides.

A run is reproducible from its config and seed. Unknown keys are errors, not silently
ignored, so a typo never trains a model with defaults the user did not mean.
"""
import dataclasses
import os
from typing import Any, Dict, List, Optional

import yaml

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMA_DIR = os.path.join(REPO_ROOT, "schema")


class ConfigError(ValueError):
  pass


def resolve(path: str) -> str:
  """A local path made absolute; a bucket URI (gs://, s3://, ...) kept as it is."""
  return path if "://" in path else os.path.abspath(path)


RETRIEVAL_MODELS = ("two_tower", "mf", "lightgcn", "sasrec", "bert4rec", "popularity",
                    "itemknn", "ease", "transitions")
SEQUENTIAL_MODELS = ("sasrec", "bert4rec")
# Their query is built from the user's recent items (Transform's `history` window).
HISTORY_MODELS = SEQUENTIAL_MODELS + ("itemknn", "ease", "transitions")


@dataclasses.dataclass
class TrainerConfig:
  """The retrieval model. `model` picks it (trainer/task.py): two_tower (user + context
  towers, the default), mf / lightgcn (id embeddings; LightGCN propagates them over the
  user-item graph), sasrec / bert4rec (the query is the user's last `history_length`
  items, encoded by self-attention), and the baselines popularity, itemknn, ease and
  transitions (item-item models over the same history window). Each is exported with a
  ScaNN index, except the baselines: exact top-K (trainer/retrieval_models.py)."""
  model: str = "two_tower"
  # The other models' own constructor knobs (epochs, dim, l2, window ...; see
  # leaderboard/factorization.py, sequential.py, baselines.py). The knobs below, from
  # `epochs` on, configure two_tower; train_steps: 0 exports a trained model untrained.
  model_args: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # Items of history the models of HISTORY_MODELS read: the last ones before each example.
  history_length: int = 50
  epochs: int = 10
  train_steps: Optional[int] = None  # replaces epochs when set; 0 = export untrained
  batch_size: int = 1024
  learning_rate: float = 0.005
  embedding_dim: int = 32
  hidden_units: List[int] = dataclasses.field(default_factory=lambda: [128])
  output_dim: int = 64
  temperature: float = 0.05
  unknown_rate: float = 0.1
  logq_correction: bool = True
  top_k: int = 100


@dataclasses.dataclass
class RankingConfig:
  """The ranking stage. `model` holds the architecture's own knobs (trainer/ranking.py
  RankerConfig: embedding_dim, hidden_units, cross_layers, dcn_structure, low_rank, ...)."""
  enabled: bool = True
  architecture: str = "dcn"  # wide_deep | dcn | deepfm | ncf
  objective: str = "binary"  # binary (implicit, sampled negatives) | regression (ratings)
  negative_ratio: int = 4  # sampled negatives per positive (binary objective)
  negative_sampling: str = "mixed"  # uniform | popularity | mixed (see trainer/ranking_data.py)
  features: Optional[List[str]] = None  # restrict to these schema features; ids always kept
  epochs: int = 3
  train_steps: Optional[int] = None
  batch_size: int = 1024
  model: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def ranker_fields(self) -> Dict[str, Any]:
    return {"architecture": self.architecture, "objective": self.objective, **self.model}


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
  ranking_negatives: int = 20  # sampled negatives per held-out positive for the ranker's TFMA
  # The ranker's TFMA sees a seeded sample of this many held-out users (0 = all): its
  # per-user metrics hold every example in memory (components/ranking_eval_examples.py).
  ranking_max_users: int = 10_000
  min_ranking_auc: float = 0.6  # an untrained ranker scores about 0.5
  max_ranking_auc_regression: float = 0.01


@dataclasses.dataclass
class PipelineConfig:
  pipeline_name: str = "recsys"
  data: str = "synthetic"  # synthetic | movielens:<dir> | csv:<file>
  synthetic_interactions: int = 60_000
  schema: Optional[str] = None  # a schema.pbtxt; default: the curated one for the source
  seed: int = 0
  pipeline_root: str = "runs/demo"
  serving_dir: str = "serving_models"
  min_interactions_to_hold_out: int = 3
  beam_args: List[str] = dataclasses.field(default_factory=lambda: [
      "--direct_running_mode=multi_processing", "--direct_num_workers=2"])
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
    return os.path.abspath(self.schema) if self.schema else os.path.join(
        SCHEMA_DIR, schema_name, "schema.pbtxt")

  def push_dir(self, model_name: str) -> str:
    """TF Serving's layout: <serving_dir>/<model name>/<version>/."""
    return f"{resolve(self.serving_dir).rstrip('/')}/{model_name}"

  @property
  def history_length(self) -> int:
    """Items of history ExampleGen writes per example: none unless the model reads it."""
    return self.trainer.history_length if self.trainer.model in HISTORY_MODELS else 0

  def retrieval_push_dir(self) -> str:
    return self.push_dir("retrieval")


SECTIONS = {"trainer": TrainerConfig, "ranking": RankingConfig,
            "validation": ValidationConfig}


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
  t = config.trainer
  checks = [
      (t.epochs >= 1, f"trainer.epochs must be >= 1, got {t.epochs}"),
      (t.train_steps is None or t.train_steps >= 0,
       f"trainer.train_steps must be >= 0 or null, got {t.train_steps}"),
      (t.batch_size >= 2,
       f"trainer.batch_size must be >= 2 (in-batch negatives), got {t.batch_size}"),
      (t.top_k >= 1, f"trainer.top_k must be >= 1, got {t.top_k}"),
      (t.model in RETRIEVAL_MODELS,
       f"trainer.model must be one of {', '.join(RETRIEVAL_MODELS)}; got {t.model!r}"),
      (t.history_length >= 1, f"trainer.history_length must be >= 1, got {t.history_length}"),
      (t.temperature > 0, f"trainer.temperature must be > 0, got {t.temperature}"),
      (0 <= t.unknown_rate < 1, f"trainer.unknown_rate must be in [0, 1), got {t.unknown_rate}"),
      (config.synthetic_interactions >= 1000,
       f"synthetic_interactions must be >= 1000, got {config.synthetic_interactions}"),
      (config.validation.ranking_max_users >= 0,
       f"validation.ranking_max_users must be >= 0, got {config.validation.ranking_max_users}"),
      (config.min_interactions_to_hold_out >= 3,
       f"min_interactions_to_hold_out must be >= 3 (train, eval, test), got "
       f"{config.min_interactions_to_hold_out}"),
  ]
  r = config.ranking
  checks += [
      (r.negative_ratio >= 1, f"ranking.negative_ratio must be >= 1, got {r.negative_ratio}"),
      (r.negative_sampling in ("uniform", "popularity", "mixed"),
       f"ranking.negative_sampling must be one of uniform, popularity, mixed; got "
       f"{r.negative_sampling!r}"),
      (r.epochs >= 1, f"ranking.epochs must be >= 1, got {r.epochs}"),
      (r.batch_size >= 2, f"ranking.batch_size must be >= 2, got {r.batch_size}"),
  ]
  for ok, message in checks:
    if not ok:
      raise ConfigError(f"{where}: {message}")
  validate_ranker(config.ranking, where)
  validate_retrieval_model(config.trainer, where)
  if config.schema and not os.path.exists(config.schema):
    raise ConfigError(f"{where}: schema file {config.schema} does not exist")


def validate_ranker(ranking_config: RankingConfig, where: str) -> None:
  """The architecture and its knobs, checked by the model code's own validation."""
  from trainer import ranking  # imports TensorFlow; only needed once a config is used
  fields = ranking_config.ranker_fields()
  unknown = sorted(set(fields) - set(ranking.RankerConfig.__dataclass_fields__))
  if unknown:
    raise ConfigError(f"{where}: ranking.model: unknown key(s) {unknown}; allowed: "
                      f"{sorted(ranking.RankerConfig.__dataclass_fields__)}")
  try:
    ranking.validate_config(ranking.RankerConfig(**fields))
  except ValueError as e:
    raise ConfigError(f"{where}: ranking: {e}") from None


def validate_retrieval_model(trainer_config: TrainerConfig, where: str) -> None:
  if trainer_config.model == "two_tower":
    if trainer_config.model_args:
      raise ConfigError(f"{where}: trainer.model_args is for the models other than "
                        f"two_tower; two_tower takes the trainer keys themselves")
    return
  from trainer import retrieval_models  # imports TensorFlow
  try:
    retrieval_models.check_args(trainer_config.model, trainer_config.model_args or {})
  except ValueError as e:
    raise ConfigError(f"{where}: {e}") from None


def validate_against_schema(config: PipelineConfig, features, schema_file: str) -> None:
  """Checks that need the schema: features the config names must exist there."""
  from pipeline import model_validation  # imports TFMA
  names = {f.name for f in features}
  missing = [n for n in (config.ranking.features or []) if n not in names]
  if missing:
    raise ConfigError(f"ranking.features names {missing}, which {schema_file} lacks; "
                      f"allowed: {sorted(names)}")
  try:
    model_validation.check(config.validation, sorted(names))
  except ValueError as e:
    raise ConfigError(f"{schema_file}: {e}") from None
