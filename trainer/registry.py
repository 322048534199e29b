"""Every model's name, said once: which class implements it and what kind it is.

No TensorFlow here: a model's module is imported only when the model is asked for (the
TensorFlow models take seconds to import, and the baselines need none of it).
"""
import importlib
import inspect
from typing import Any, Dict, Tuple

_MODELS = "recsys_tfx.trainer.models"

# name -> (module, class): the Recommender implementations (trainer/models/).
MODELS: Dict[str, Tuple[str, str]] = {
    "popularity": (f"{_MODELS}.baselines", "Popularity"),
    "itemknn": (f"{_MODELS}.baselines", "ItemKNN"),
    "ease": (f"{_MODELS}.baselines", "EASE"),
    "transitions": (f"{_MODELS}.baselines", "Transitions"),
    "mf": (f"{_MODELS}.factorization", "MatrixFactorization"),
    "lightgcn": (f"{_MODELS}.factorization", "LightGCN"),
    "two_tower": (f"{_MODELS}.two_tower", "TwoTower"),
    "sasrec": (f"{_MODELS}.sequential", "SASRec"),
    "bert4rec": (f"{_MODELS}.sequential", "BERT4Rec"),
    "ncf": (f"{_MODELS}.ncf", "NCF"),
}

# What the pipeline's RetrievalTrainer can export (trainer.model). NCF scores through its
# network, not an inner product, so no top-K index serves it: in the pipeline it is a
# ranking architecture, and a retrieval model only on the leaderboard.
RETRIEVAL_MODELS = ("two_tower", "mf", "lightgcn", "sasrec", "bert4rec", "popularity",
                    "itemknn", "ease", "transitions")
SEQUENTIAL_MODELS = ("sasrec", "bert4rec")
BASELINES = ("popularity", "itemknn", "ease", "transitions")
# Their query is built from the user's recent items (Transform's `history` window).
HISTORY_MODELS = SEQUENTIAL_MODELS + ("itemknn", "ease", "transitions")
# The leaderboard's default rows; ncf is asked for by name (trainer/models/ncf.py says why).
LEADERBOARD_DEFAULT = ("popularity", "itemknn", "ease", "transitions", "mf", "two_tower",
                       "sasrec", "bert4rec", "lightgcn")


def model_class(name: str):
  """The class implementing `name`; ValueError naming the known models otherwise."""
  if name not in MODELS:
    raise ValueError(f"unknown model {name!r}: choose from {', '.join(MODELS)}")
  module, cls = MODELS[name]
  return getattr(importlib.import_module(module), cls)


def accepted_args(name: str) -> set:
  """Constructor arguments a config may set (verbose is the runner's; max_len is
  trainer.history_length, the window Transform builds)."""
  return set(inspect.signature(model_class(name)).parameters) - {"verbose", "max_len"}


def check_args(name: str, args: Dict[str, Any]) -> None:
  """Raises ValueError naming the keys `name`'s constructor does not take."""
  accepted = accepted_args(name)
  unknown = sorted(set(args) - accepted)
  if unknown:
    raise ValueError(f"trainer.model_args: {name} has no parameter(s) {unknown}; allowed: "
                     f"{sorted(accepted)}")
