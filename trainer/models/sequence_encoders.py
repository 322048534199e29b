"""Self-attentive sequence encoders over a user's item history (SASRec, BERT4Rec).

Convention, shared by training, scoring and the exported model:

  history   int [batch, length] item indices, LEFT-padded, most recent item last,
            length <= max_len (positions count from the right, so the last item always
            has the same position embedding whatever the length).
  PAD       = num_items: an extra row of the item table, zeroed by a mask and never
            attended to (key padding mask), so more or less left padding gives the same
            state for the real positions.
  MASK      = num_items + 1 (BERT4Rec only): the cloze token.

Scores are `state . item_embeddings` with the input item table shared as the output
table (Kang & McAuley 2018). Everything is plain TensorFlow ops on fixed-size inputs, so
the layers serialise (get_config) and run inside a SavedModel.
"""
from typing import Sequence

import numpy as np
import tensorflow as tf


def pad_history(items: Sequence[int], max_len: int, pad: int) -> np.ndarray:
  """int64 [max_len]: the last `max_len` of `items`, left-padded with `pad`."""
  items = np.asarray(items, np.int64)[-max_len:] if max_len else np.empty(0, np.int64)
  out = np.full(max_len, pad, np.int64)
  out[max_len - len(items):] = items
  return out


def pad_histories(sequences: Sequence[Sequence[int]], max_len: int, pad: int) -> np.ndarray:
  """int64 [len(sequences), max_len]: pad_history of each sequence."""
  out = np.full((len(sequences), max_len), pad, np.int64)
  for row, items in enumerate(sequences):
    out[row] = pad_history(items, max_len, pad)
  return out


class _TransformerEncoder(tf.keras.layers.Layer):
  """Item + position embedding, then pre-layer-norm transformer blocks
  (x + Dropout(MHA(LN(x))), x + Dropout(FFN(LN(x)))) and a final layer norm. Padded
  positions are zeroed after every block and masked out as attention keys."""

  causal = False
  extra_tokens = 1  # PAD
  scale_items = False  # multiply item embeddings by sqrt(dim) before adding positions

  def __init__(self, num_items: int, dim: int = 64, max_len: int = 50, blocks: int = 2,
               heads: int = 1, dropout: float = 0.2, **kwargs):
    super().__init__(**kwargs)
    if dim % heads:
      raise ValueError(f"dim={dim} is not a multiple of heads={heads}")
    self.num_items, self.dim, self.max_len = num_items, dim, max_len
    self.blocks, self.heads, self.dropout = blocks, heads, dropout
    self.pad_index = num_items
    init = lambda: tf.keras.initializers.TruncatedNormal(stddev=0.02)  # noqa: E731
    self.item_embedding = tf.keras.layers.Embedding(
        num_items + self.extra_tokens, dim, embeddings_initializer=init(),
        name="item_embedding")
    self.position_embedding = tf.keras.layers.Embedding(
        max_len, dim, embeddings_initializer=init(), name="position_embedding")
    self.input_dropout = tf.keras.layers.Dropout(dropout)
    self.attention_norms, self.attentions, self.ffn_norms, self.ffns = [], [], [], []
    for b in range(blocks):
      self.attention_norms.append(tf.keras.layers.LayerNormalization(
          epsilon=1e-6, name=f"attention_norm_{b}"))
      self.attentions.append(tf.keras.layers.MultiHeadAttention(
          heads, dim // heads, dropout=dropout, name=f"attention_{b}"))
      self.ffn_norms.append(tf.keras.layers.LayerNormalization(
          epsilon=1e-6, name=f"ffn_norm_{b}"))
      self.ffns.append(tf.keras.Sequential([
          tf.keras.layers.Dense(dim, activation="relu"),
          tf.keras.layers.Dropout(dropout),
          tf.keras.layers.Dense(dim),
          tf.keras.layers.Dropout(dropout)], name=f"ffn_{b}"))
    self.block_dropout = tf.keras.layers.Dropout(dropout)
    self.final_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")

  @property
  def item_embeddings(self) -> tf.Tensor:
    """[num_items, dim]: the catalogue's rows of the shared item table (no PAD/MASK);
    exists once the layer has been called (built)."""
    return self.item_embedding.embeddings[:self.num_items]

  def call(self, history: tf.Tensor, training: bool = False) -> tf.Tensor:
    """[batch, length, dim] state per position of the left-padded `history`."""
    history = tf.cast(history, tf.int32)
    length = tf.shape(history)[1]
    valid = tf.not_equal(history, self.pad_index)  # [batch, length]
    keep = tf.cast(valid, tf.float32)[:, :, None]
    positions = tf.range(self.max_len - length, self.max_len)  # right-aligned
    x = self.item_embedding(history)
    if self.scale_items:
      x *= self.dim ** 0.5
    x += self.position_embedding(positions)
    x = self.input_dropout(x, training=training) * keep
    mask = tf.logical_and(valid[:, None, :], valid[:, :, None])  # [batch, query, key]
    if self.causal:
      lower = tf.linalg.band_part(tf.ones([length, length], tf.bool), -1, 0)
      mask = tf.logical_and(mask, lower[None])
    for norm, attention, ffn_norm, ffn in zip(self.attention_norms, self.attentions,
                                              self.ffn_norms, self.ffns):
      h = norm(x)
      h = attention(h, h, attention_mask=mask, training=training)
      x = x + self.block_dropout(h, training=training)
      x = (x + ffn(ffn_norm(x), training=training)) * keep
    return self.final_norm(x) * keep

  def logits(self, states: tf.Tensor) -> tf.Tensor:
    """[..., num_items] scores of `states` [..., dim] against every catalogue item."""
    return tf.linalg.matmul(states, self.item_embeddings, transpose_b=True)

  def get_config(self):
    config = super().get_config()
    config.update(num_items=self.num_items, dim=self.dim, max_len=self.max_len,
                  blocks=self.blocks, heads=self.heads, dropout=self.dropout)
    return config


class SASRecEncoder(_TransformerEncoder):
  """SASRec (Kang & McAuley 2018): causal self-attention, position t sees items <= t and
  its state predicts item t + 1. PAD = num_items."""

  causal = True
  scale_items = True  # as in the paper; the causal mask already carries the order

  def query_vector(self, history: tf.Tensor, training: bool = False) -> tf.Tensor:
    """[batch, dim]: the last position's state, the query for the next item."""
    return self(history, training=training)[:, -1]


class BERT4RecEncoder(_TransformerEncoder):
  """BERT4Rec (Sun et al. 2019): bidirectional self-attention (padding mask only) trained
  to fill in MASK tokens. PAD = num_items, MASK = num_items + 1. Item embeddings are not
  scaled by sqrt(dim) (as in the paper): position embeddings are this model's only sense
  of order, and scaled items drowned them (it barely learned a deterministic sequence)."""

  extra_tokens = 2  # PAD, MASK

  def __init__(self, num_items: int, dim: int = 64, max_len: int = 50, blocks: int = 2,
               heads: int = 2, dropout: float = 0.2, **kwargs):
    super().__init__(num_items, dim=dim, max_len=max_len, blocks=blocks, heads=heads,
                     dropout=dropout, **kwargs)
    self.mask_index = num_items + 1

  def inference_input(self, history: tf.Tensor) -> tf.Tensor:
    """The history without its oldest position and with MASK appended (same length): the
    MASK position's state is the query for the next item."""
    history = tf.cast(history, tf.int32)
    masks = tf.fill([tf.shape(history)[0], 1], self.mask_index)
    return tf.concat([history[:, 1:], masks], axis=1)

  def query_vector(self, history: tf.Tensor, training: bool = False) -> tf.Tensor:
    """[batch, dim]: the state of MASK appended to `history` (a left-padded history of
    real items)."""
    return self(self.inference_input(history), training=training)[:, -1]
