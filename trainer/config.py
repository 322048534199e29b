"""The trainer's knobs, owned here: plain dataclasses, no TensorFlow, so configs can be
read and checked without loading a model. pipeline/configs.py composes them into a run's
config (the `trainer:` and `ranking:` sections of configs/*.yaml); each Trainer's run_fn
rebuilds them from its custom_config with `from_custom_config`, which refuses a missing
or unknown key rather than filling in a default of its own.
"""
import dataclasses
from typing import Any, Dict, List, Optional, Sequence, Type, TypeVar

from recsys_tfx.trainer import registry

T = TypeVar("T")


@dataclasses.dataclass
class TwoTowerConfig:
  """The two-tower model's own knobs (trainer/models/two_tower.py)."""
  embedding_dim: int = 32
  hidden_units: Sequence[int] = (128,)
  output_dim: int = 64
  temperature: float = 0.05
  unknown_rate: float = 0.1  # how often ids/context are masked to "unknown" in training
  learning_rate: float = 0.005
  logq_correction: bool = True  # subtract log(sampling probability) from in-batch logits


@dataclasses.dataclass
class TrainerConfig(TwoTowerConfig):
  """The retrieval stage. `model` picks one model (trainer/registry.py): two_tower (user +
  context towers, the default, configured by the TwoTowerConfig fields), mf / lightgcn,
  sasrec / bert4rec, and the baselines popularity, itemknn, ease and transitions.

  `models` instead trains several in one run: the one with the best NDCG@10 on the eval
  split becomes the primary (its order is the retrieval order, TFMA validates it), and
  every one of them is a candidate source: the exported model returns the union of their
  top-K, each candidate with every source's score and rank, for the ranker.

  The other models take their own constructor knobs in `model_args`: the knobs of `model`
  (e.g. {epochs: 20}), or with `models`, a mapping model -> knobs (e.g. {sasrec:
  {epochs: 20}, ease: {l2: 200}})."""
  model: str = "two_tower"
  models: Optional[List[str]] = None
  model_args: Dict[str, Any] = dataclasses.field(default_factory=dict)
  # Items of history the models of registry.HISTORY_MODELS read: the last ones before
  # each example.
  history_length: int = 50
  epochs: int = 10
  train_steps: Optional[int] = None  # replaces epochs when set; 0 = export untrained
  batch_size: int = 1024
  top_k: int = 100  # candidates each source returns

  def candidate_models(self) -> List[str]:
    """The models this run trains, in config order (the sources' order)."""
    return list(self.models) if self.models else [self.model]

  def args_for(self, name: str) -> Dict[str, Any]:
    """The constructor knobs of one model."""
    if self.models:
      return dict((self.model_args or {}).get(name) or {})
    return dict(self.model_args or {}) if name == self.model else {}

  def reads_history(self) -> bool:
    return any(m in registry.HISTORY_MODELS for m in self.candidate_models())

  def problems(self) -> List[str]:
    checks = [
        (self.epochs >= 1, f"trainer.epochs must be >= 1, got {self.epochs}"),
        (self.train_steps is None or self.train_steps >= 0,
         f"trainer.train_steps must be >= 0 or null, got {self.train_steps}"),
        (self.batch_size >= 2,
         f"trainer.batch_size must be >= 2 (in-batch negatives), got {self.batch_size}"),
        (self.top_k >= 1, f"trainer.top_k must be >= 1, got {self.top_k}"),
        (self.model in registry.RETRIEVAL_MODELS,
         f"trainer.model must be one of {', '.join(registry.RETRIEVAL_MODELS)}; "
         f"got {self.model!r}"),
        (self.history_length >= 1,
         f"trainer.history_length must be >= 1, got {self.history_length}"),
        (self.temperature > 0, f"trainer.temperature must be > 0, got {self.temperature}"),
        (0 <= self.unknown_rate < 1,
         f"trainer.unknown_rate must be in [0, 1), got {self.unknown_rate}"),
    ]
    problems = [message for ok, message in checks if not ok]
    if self.models is not None:
      problems += self._models_problems()
    if problems:
      return problems
    for name in self.candidate_models():
      args = self.args_for(name)
      if name == "two_tower" and args:
        problems.append("trainer.model_args: two_tower takes the trainer keys themselves "
                        "(embedding_dim, epochs, ...), not model_args")
      elif name != "two_tower":
        try:
          registry.check_args(name, args)
        except ValueError as e:
          problems.append(str(e))
    return problems

  def _models_problems(self) -> List[str]:
    models = self.models
    if not isinstance(models, list) or not models or not all(isinstance(m, str) for m in models):
      return [f"trainer.models must be a non-empty list of model names; got {models!r}"]
    unknown = [m for m in models if m not in registry.RETRIEVAL_MODELS]
    if unknown:
      return [f"trainer.models: unknown model(s) {unknown}; allowed: "
              f"{', '.join(registry.RETRIEVAL_MODELS)}"]
    if len(set(models)) != len(models):
      return [f"trainer.models lists a model twice: {models}"]
    args = self.model_args or {}
    stray = sorted(set(args) - set(models))
    if stray or not all(isinstance(v, dict) for v in args.values()):
      return [f"trainer.model_args: with trainer.models it maps model names to their knobs "
              f"(e.g. {{sasrec: {{epochs: 20}}}}); {stray or sorted(args)} are not models of "
              f"trainer.models {models}"]
    return []


ARCHITECTURES = ("wide_deep", "dcn", "deepfm", "ncf")
DCN_STRUCTURES = ("stacked", "parallel")
OBJECTIVES = ("binary", "regression")


@dataclasses.dataclass
class RankerConfig:
  """One ranking architecture's knobs (trainer/models/rankers.py)."""
  architecture: str = "dcn"
  embedding_dim: int = 16
  hidden_units: Sequence[int] = (128, 64)
  cross_layers: int = 2  # dcn
  dcn_structure: str = "stacked"  # dcn: "stacked" (cross then deep) | "parallel"
  low_rank: Optional[int] = None  # dcn: projection dim of the cross layers (None = full rank)
  wide_hash_buckets: int = 10_000  # wide_deep: buckets for hashed feature crosses
  objective: str = "binary"  # "binary" (implicit, sigmoid cross-entropy) | "regression"
  learning_rate: float = 0.003
  unknown_rate: float = 0.1  # how often ids/context are masked to "unknown" in training


def validate_ranker(config: RankerConfig) -> None:
  """Raises ValueError naming the bad value and what is allowed."""

  def bad(field, allowed):
    raise ValueError(f"RankerConfig.{field}={getattr(config, field)!r}; expected {allowed}")

  if config.architecture not in ARCHITECTURES:
    bad("architecture", f"one of {ARCHITECTURES}")
  if config.dcn_structure not in DCN_STRUCTURES:
    bad("dcn_structure", f"one of {DCN_STRUCTURES}")
  if config.objective not in OBJECTIVES:
    bad("objective", f"one of {OBJECTIVES}")
  for field in ("embedding_dim", "cross_layers", "wide_hash_buckets"):
    value = getattr(config, field)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      bad(field, "an integer >= 1")
  if config.low_rank is not None and (not isinstance(config.low_rank, int)
                                      or config.low_rank < 1):
    bad("low_rank", "None (full rank) or an integer >= 1")
  units = config.hidden_units
  if not isinstance(units, (list, tuple)) or any(
      isinstance(u, bool) or not isinstance(u, int) or u < 1 for u in units):
    bad("hidden_units", "a sequence of integers >= 1 (may be empty)")
  if not config.learning_rate > 0:
    bad("learning_rate", "a number > 0")
  if not 0 <= config.unknown_rate < 1:
    bad("unknown_rate", "a number in [0, 1)")


LOSSES = ("listwise", "pointwise")


@dataclasses.dataclass
class RankingConfig:
  """The ranking stage: re-orders the retrieval stage's candidates (trainer/ranking_task.py).

  It is trained on the lists a retrieval model really produces: the candidate sources
  (trainer.models) are fitted on an earlier time window (each user's train interactions
  but the last `list_targets`), and each of those held-back interactions becomes one list
  of their candidates, with every source's score and rank as features. `loss: listwise`
  is a softmax over each list; `pointwise` a sigmoid per candidate. `model` holds the
  architecture's own knobs (RankerConfig fields: embedding_dim, hidden_units, ...)."""
  enabled: bool = True
  architecture: str = "dcn"  # wide_deep | dcn | deepfm | ncf
  objective: str = "binary"  # the rankers' output; lists of candidates have no ratings
  loss: str = "listwise"  # listwise (softmax over each list) | pointwise (sigmoid)
  list_targets: int = 3  # per user: held-back train interactions that become lists
  features: Optional[List[str]] = None  # restrict to these schema features; ids always kept
  epochs: int = 5
  train_steps: Optional[int] = None
  batch_size: int = 32  # lists per step
  model: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def ranker(self) -> RankerConfig:
    """The architecture's RankerConfig; ValueError naming unknown or bad knobs."""
    fields = {"architecture": self.architecture, "objective": self.objective, **self.model}
    allowed = sorted(f.name for f in dataclasses.fields(RankerConfig))
    unknown = sorted(set(fields) - set(allowed))
    if unknown:
      raise ValueError(f"ranking.model: unknown key(s) {unknown}; allowed: {allowed}")
    config = RankerConfig(**fields)
    validate_ranker(config)
    return config

  def problems(self) -> List[str]:
    checks = [
        (self.loss in LOSSES,
         f"ranking.loss must be one of {', '.join(LOSSES)}; got {self.loss!r}"),
        (self.objective == "binary",
         f"ranking.objective must be binary: the ranker orders candidate lists, whose "
         f"candidates have no ratings; got {self.objective!r}"),
        (isinstance(self.list_targets, int) and self.list_targets >= 1,
         f"ranking.list_targets must be an integer >= 1, got {self.list_targets!r}"),
        (self.epochs >= 1, f"ranking.epochs must be >= 1, got {self.epochs}"),
        (self.batch_size >= 1, f"ranking.batch_size must be >= 1, got {self.batch_size}"),
    ]
    problems = [message for ok, message in checks if not ok]
    try:
      self.ranker()
    except ValueError as e:
      text = str(e)
      problems.append(text if text.startswith("ranking.") else f"ranking: {text}")
    return problems


@dataclasses.dataclass
class RetrievalRun:
  """Everything the retrieval run_fn reads from its custom_config."""
  trainer: TrainerConfig
  seed: int
  data_dir: str  # the canonical data: items.csv is the catalogue, users.csv user features
  min_interactions_to_hold_out: int


@dataclasses.dataclass
class RankingRun:
  """Everything the ranking run_fn reads from its custom_config: its own config, the
  retrieval stage's (whose candidate sources it refits on an earlier window), the seed,
  the canonical data and the split's min_interactions_to_hold_out."""
  ranking: RankingConfig
  trainer: TrainerConfig
  seed: int
  data_dir: str
  min_interactions_to_hold_out: int


def to_custom_config(run) -> Dict[str, Any]:
  """A RetrievalRun / RankingRun as the JSON-able dict TFX's Trainer carries."""
  return json_ready(dataclasses.asdict(run))


def json_ready(value):
  if isinstance(value, dict):
    return {k: json_ready(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [json_ready(v) for v in value]
  return value


def from_custom_config(cls: Type[T], values: Dict[str, Any]) -> T:
  """Rebuilds a RetrievalRun / RankingRun. A missing or unknown key is a ValueError
  naming it: the Trainer runs with exactly what the pipeline configured, never with a
  default of its own."""
  return _build(cls, values, cls.__name__)


def _build(cls, values: Dict[str, Any], where: str):
  fields = {f.name: f for f in dataclasses.fields(cls)}
  unknown = sorted(set(values) - set(fields))
  missing = sorted(set(fields) - set(values))  # to_custom_config writes every field
  if unknown or missing:
    raise ValueError(f"{where}: custom_config has unknown key(s) {unknown} and lacks "
                     f"{missing}")
  kwargs = {}
  for name, value in values.items():
    nested = fields[name].type
    if dataclasses.is_dataclass(nested):
      value = _build(nested, value, f"{where}.{name}")
    kwargs[name] = value
  return cls(**kwargs)
