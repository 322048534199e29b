"""Both trainers write TensorBoard logs under the Trainer's model_run_dir: loss and
validation metrics per epoch, the two-tower's id embedding norms. Tiny models trained
in-process through the trainers' own code (trainer/task.py's Trained, the ranking
trainer's ListTrainer with its epoch logger); the event files are read back."""
import collections
import glob
import os
import types

import numpy as np
import tensorflow as tf

from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import config as config_lib
from recsys_tfx.trainer import list_training, ranking_task, tensorboard_logs
from recsys_tfx.trainer.config import RankerConfig
from recsys_tfx.trainer.models import rankers
from recsys_tfx.trainer.task import Trained

from test_list_training import ID_FEATURES, ITEMS, USERS, IdModule, make_lists
from recsys_tfx.schema.features import SCHEMA_DIR

SYNTHETIC_SCHEMA = f"{SCHEMA_DIR}/synthetic/schema.pbtxt"


def _batch(features, vocab_sizes, n, rng):
  """Transformed features of n random rows (as tests/trainer/models/test_two_tower.py)."""
  out = {}
  for f in features:
    if f.encoding == "vocab":
      out[f.name] = tf.constant(rng.integers(0, vocab_sizes[f.name], n), tf.int64)
    elif f.encoding == "int_cat":
      out[f.name] = tf.constant(rng.integers(0, f.cardinality, n), tf.int64)
    elif f.encoding == "multi":
      out[f.name] = tf.ragged.constant([list(rng.integers(0, vocab_sizes[f.name], 2))
                                        for _ in range(n)], dtype=tf.int64).to_sparse()
    else:
      out[f.name] = tf.constant(rng.normal(size=n), tf.float32)
  return out


def logged(log_dir: str):
  """{run folder (relative to log_dir): {tag: [step, ...]}} of every event file below."""
  out = collections.defaultdict(lambda: collections.defaultdict(list))
  for path in glob.glob(os.path.join(log_dir, "**", "events.out.tfevents.*"), recursive=True):
    run = os.path.relpath(os.path.dirname(path), log_dir)
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        out[run][value.tag].append(event.step)
  return out


def test_the_two_tower_logs_loss_validation_and_embedding_norms(tmp_path):
  rng = np.random.default_rng(0)
  features = feats.load_features(SYNTHETIC_SCHEMA)
  vocab = {"user_id": 50, "item_id": 40, "genres": 6, "device": 3, "gender": 2}
  data = _batch(features, vocab, 256, rng)
  data["item_id"] = data["user_id"] % 40
  dataset = tf.data.Dataset.from_tensor_slices(data).batch(64)
  run = config_lib.RetrievalRun(config_lib.TrainerConfig(epochs=2), seed=0, data_dir="",
                                min_interactions_to_hold_out=3)
  fn_args = types.SimpleNamespace(model_run_dir=str(tmp_path))
  trained = Trained(run, fn_args, None, features, vocab, dataset, dataset,
                    data["item_id"].numpy(), None)
  _, history, _ = trained.fit("two_tower")
  assert len(history["loss"]) == 2

  runs = logged(os.path.join(str(tmp_path), "two_tower"))
  assert runs["train"]["epoch_loss"] == [0, 1]
  assert runs["validation"]["epoch_loss"] == [0, 1]
  for name in ("user_id", "item_id"):
    assert runs["embeddings"][f"{name}_embedding_norm"] == [0, 1]  # histograms
    assert runs["embeddings"][f"{name}_embedding_mean_norm"] == [0, 1]


def test_the_ranker_logs_loss_and_validation_ndcg_per_epoch(tmp_path):
  rng = np.random.default_rng(0)
  train, validation = make_lists(120, rng), make_lists(40, rng)
  model = rankers.build_ranker(RankerConfig(architecture="dcn", embedding_dim=8,
                                            hidden_units=(16,)),
                               ID_FEATURES, {"user_id": USERS, "item_id": ITEMS},
                               source_stats=list_training.source_stats(train))
  trainer = list_training.ListTrainer(IdModule(), model, "listwise", 0.01,
                                      {"hour": tf.int64}, log=lambda *_: None)
  trainer.fit(train, validation, epochs=3, batch_size=32, seed=0,
              on_epoch_end=ranking_task.epoch_logger(str(tmp_path), "dcn"))
  runs = logged(os.path.join(str(tmp_path), "dcn"))
  assert runs["train"]["loss"] == [0, 1, 2]
  assert runs["validation"]["val_ndcg@10"] == [0, 1, 2]


def test_a_model_without_epochs_logs_its_eval_metrics_once(tmp_path):
  log_dir = tensorboard_logs.model_log_dir(str(tmp_path), "popularity")
  tensorboard_logs.write_history(log_dir, tensorboard_logs.TRAIN, {"loss": []})
  tensorboard_logs.write_eval_metrics(log_dir, {"ndcg@10": 0.1, "hit_rate@10": 0.2,
                                                "settings": {"model": "popularity"}}, 0)
  runs = logged(log_dir)
  assert dict(runs["validation"]) == {"eval_ndcg@10": [0], "eval_hit_rate@10": [0]}
  assert "train" not in runs
