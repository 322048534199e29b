"""The two-tower retrieval model (TFRS), built from the schema's feature roles.

Query tower: user id + user features + context.  Candidate tower: item id + item
content, so an item never seen in training still gets an embedding from its content.

Loss: in-batch sampled softmax. In-batch negatives are drawn in proportion to
popularity, so the logits are corrected by log(sampling probability) (logQ correction,
Yi et al. 2019), and a batch's other rows that hold the same item are not counted as
negatives (accidental-hit removal).

Ids and context are replaced by their "unknown" index at a small rate while training, so
the unknown-user / unknown-item / missing-context embeddings are trained too: cold-start
users and items and requests without context then get sensible vectors.
"""
import dataclasses
from typing import Dict, List, Sequence

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from trainer import features as feats
from trainer.embedding import FeatureEmbedding, UnknownMasking


@dataclasses.dataclass
class ModelConfig:
  embedding_dim: int = 32
  hidden_units: Sequence[int] = (128,)
  output_dim: int = 64
  temperature: float = 0.05
  unknown_rate: float = 0.1  # how often ids/context are masked to "unknown" in training
  learning_rate: float = 0.005
  logq_correction: bool = True  # subtract log(sampling probability) from in-batch logits


class Tower(tf.keras.Model):
  """Embeds each feature by its encoding (trainer/embedding.py), concatenates, and maps
  through an MLP to a unit-length vector (so dot product == cosine, which ScaNN indexes
  directly)."""

  def __init__(self, features: List[feats.Feature], vocab_sizes: Dict[str, int],
               config: ModelConfig, maskable: Sequence[str] = (), **kwargs):
    super().__init__(**kwargs)
    self._mask = UnknownMasking(features, vocab_sizes, maskable, config.unknown_rate)
    # "scalar": a numeric feature enters as its z-score, a column of its own.
    self._embed = FeatureEmbedding(features, vocab_sizes, config.embedding_dim,
                                   numeric="scalar")
    self._mlp = tf.keras.Sequential(
        [tf.keras.layers.Dense(units, activation="relu") for units in config.hidden_units]
        + [tf.keras.layers.Dense(config.output_dim)])

  def call(self, inputs: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    fields = self._embed(self._mask(inputs, training=training))
    return tf.math.l2_normalize(self._mlp(tf.concat(fields, axis=1)), axis=1)


class TwoTowerModel(tfrs.Model):

  def __init__(self, all_features: List[feats.Feature], vocab_sizes: Dict[str, int],
               item_counts: np.ndarray, config: ModelConfig):
    super().__init__()
    query = feats.query_features(all_features)
    candidate = feats.candidate_features(all_features)
    masked_query = [f.name for f in query if f.name == feats.USER_ID or f.role == "context"]
    self.query_tower = Tower(query, vocab_sizes, config, maskable=masked_query, name="query_tower")
    self.candidate_tower = Tower(candidate, vocab_sizes, config, maskable=[feats.ITEM_ID],
                                 name="candidate_tower")
    # Add-one smoothing keeps log(probability) finite for items absent from training.
    counts = np.asarray(item_counts, dtype=np.float64) + 1.0
    self._item_probability = tf.constant(counts / counts.sum(), dtype=tf.float32)
    self._logq_correction = config.logq_correction
    self.task = tfrs.tasks.Retrieval(temperature=config.temperature, remove_accidental_hits=True)

  def compute_loss(self, features: Dict[str, tf.Tensor], training: bool = False) -> tf.Tensor:
    query = self.query_tower(features, training=training)
    candidate = self.candidate_tower(features, training=training)
    item = features[feats.ITEM_ID]
    probability = tf.gather(self._item_probability, item) if self._logq_correction else None
    return self.task(query, candidate,
                     candidate_sampling_probability=probability,
                     candidate_ids=item,
                     compute_metrics=False)
