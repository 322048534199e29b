"""Features, named once: what each schema feature is and how it is encoded.

The curated schema (schema/<name>/schema.pbtxt) is the single source of truth. Each
feature carries a role tag (`role:user`, `role:item`, `role:context`, `role:history`,
`role:label`, `role:rating`, `role:time`) and its type tells the encoding:

    BYTES, one value          -> "vocab":     vocabulary index (Transform), embedded
    BYTES, many values        -> "multi":     vocabulary indices (sparse), mean-pooled
    INT with categorical domain -> "int_cat": the integer itself, embedded (e.g. hour 0..23)
    INT / FLOAT otherwise     -> "numeric":   z-scored float

A `role:history` feature (the user's earlier item ids, oldest first) is encoded
"history": item-vocabulary indices in a fixed window of the most recent items, read only
by the retrieval models that read history (trainer/registry.py HISTORY_MODELS).

Labels, ratings and timestamps pass through Transform unchanged and never feed a tower.
Slice features (computed by TimeSplitExampleGen: item popularity, user activity, daypart
buckets) exist only for evaluation: Transform drops them.
"""
import dataclasses
import os
from typing import Dict, List, Optional

from tensorflow_metadata.proto.v0 import schema_pb2
from google.protobuf import text_format

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))  # <source>/schema.pbtxt below it

USER_ID = "user_id"
ITEM_ID = "item_id"
TIMESTAMP = "timestamp"
LABEL = "label"

ROLES = ("user", "item", "context", "history", "label", "rating", "time", "slice")
HISTORY = "history"
TOWER_ROLES = ("user", "item", "context")


@dataclasses.dataclass(frozen=True)
class Feature:
  name: str
  role: str
  encoding: str  # vocab | multi | int_cat | numeric | history | passthrough | slice
  dtype: str  # raw tf.Example type: "string" | "int64" | "float32"
  cardinality: Optional[int] = None  # int_cat only: max + 1 (one more is the "unknown" bucket)


def curated_schema_file(name: str) -> str:
  """The curated schema of a source (synthetic, movielens, movielens_users, interactions)."""
  return os.path.join(SCHEMA_DIR, name, "schema.pbtxt")


def load_schema(path: str) -> schema_pb2.Schema:
  with open(path) as f:
    return text_format.Parse(f.read(), schema_pb2.Schema())


_DTYPES = {schema_pb2.BYTES: "string", schema_pb2.INT: "int64", schema_pb2.FLOAT: "float32"}


def _role(feature: schema_pb2.Feature, schema_path: str) -> str:
  roles = [t[len("role:"):] for t in feature.annotation.tag if t.startswith("role:")]
  if len(roles) != 1 or roles[0] not in ROLES:
    raise ValueError(
        f"{schema_path}: feature '{feature.name}' needs exactly one annotation tag "
        f"'role:<r>' with r in {ROLES}; found {list(feature.annotation.tag)}")
  return roles[0]


def _encoding(feature: schema_pb2.Feature, role: str) -> str:
  if role in ("label", "rating", "time"):
    return "passthrough"
  if role == "slice":
    return "slice"
  if role == "history":
    return "history"
  if feature.type == schema_pb2.BYTES:
    return "vocab" if feature.HasField("shape") else "multi"
  if feature.type == schema_pb2.INT and feature.int_domain.is_categorical:
    return "int_cat"
  return "numeric"


def features_from_schema(schema: schema_pb2.Schema, schema_path: str = "schema") -> List[Feature]:
  """Every feature of the schema with its role and encoding, in schema order."""
  out = []
  for f in schema.feature:
    role = _role(f, schema_path)
    encoding = _encoding(f, role)
    cardinality = None
    if encoding == "int_cat":
      if f.int_domain.min < 0:
        raise ValueError(f"{schema_path}: categorical int '{f.name}' needs int_domain.min >= 0")
      cardinality = int(f.int_domain.max) + 1
    out.append(Feature(f.name, role, encoding, _DTYPES[f.type], cardinality))
  names = {f.name for f in out}
  for required in (USER_ID, ITEM_ID, TIMESTAMP):
    if required not in names:
      raise ValueError(f"{schema_path}: the canonical record needs a '{required}' feature")
  return out


def load_features(path: str) -> List[Feature]:
  return features_from_schema(load_schema(path), path)


def by_role(features: List[Feature], *roles: str) -> List[Feature]:
  return [f for f in features if f.role in roles]


def query_features(features: List[Feature]) -> List[Feature]:
  """Features the query tower sees: the user's own and the request context."""
  return by_role(features, "user", "context")


def history_feature(features: List[Feature]) -> Optional[Feature]:
  """The schema's item-history feature, if it has one."""
  found = by_role(features, "history")
  return found[0] if found else None


def candidate_features(features: List[Feature]) -> List[Feature]:
  return by_role(features, "item")


def feature_map(features: List[Feature]) -> Dict[str, Feature]:
  return {f.name: f for f in features}
