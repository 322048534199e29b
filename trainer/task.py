"""Trainer entry point (`run_fn`): train the retrieval model the config names
(`model`: two_tower, or mf / lightgcn / sasrec / bert4rec / popularity / itemknn / ease /
transitions, wrapped by trainer/retrieval_models.py) on Transform's output and export the
serving SavedModel with its top-K index (ScaNN; exact for the baselines).

Everything arrives in the Trainer's custom_config as a RetrievalRun (trainer/config.py):
the TrainerConfig, the seed, the canonical data directory (whose items.csv is the
catalogue the index covers and users.csv the user-feature table) and the split's
min_interactions_to_hold_out. train_steps, when set, replaces epochs with a step count;
0 trains nothing (a deliberately untrained model, useful to prove that validation gates a
push). It lives in custom_config because TFX reads TrainArgs.num_steps=0 as "unset".
"""
import dataclasses
import gc
import inspect
import json
import os
from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from recsys_tfx.schema import canonical
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import config as config_lib
from recsys_tfx.trainer import (export, registry, retrieval_models, selection,
                                tensorboard_logs, warmup)
from recsys_tfx.trainer.models import protocol
from recsys_tfx.trainer.models.two_tower import TwoTowerModel
from recsys_tfx.trainer.preprocessing import NUM_OOV_BUCKETS


# ExampleGen writes each user's rows together (it groups by user to split by time). With
# TFX's default 10,000-example buffer a batch then holds a handful of users, and the
# in-batch negatives are nearly all the same users' items: on the 60K demo that cost a
# third of HR@10. A buffer larger than the data (up to this size) shuffles it fully.
SHUFFLE_BUFFER = 250_000


def transformed_dataset(fn_args, files, tf_transform_output, batch_size: int, shuffle: bool,
                        seed: int):
  """Transform's output (`files`: patterns of its tf.Example TFRecords) as batches of
  transformed features, one pass per iteration of the dataset.

  Read with tf.data directly rather than through fn_args.data_accessor (TFXIO), which
  decompresses and parses every record again on every pass, parsing on one thread. Here
  the serialized records stay in memory after the first pass (a few hundred bytes per
  example), are shuffled over the whole split each pass, and are parsed a batch at a
  time in parallel: the same tensors, faster (bench/training_input.py).
  """
  del fn_args  # the callers' signature; the files are read directly
  names = sorted(name for pattern in files for name in tf.io.gfile.glob(pattern))
  compression = "GZIP" if all(name.endswith(".gz") for name in names) else ""
  records = tf.data.TFRecordDataset(names, compression,
                                    num_parallel_reads=tf.data.AUTOTUNE).cache()
  if shuffle:
    records = records.shuffle(SHUFFLE_BUFFER, seed=seed, reshuffle_each_iteration=True)
  spec = tf_transform_output.transformed_feature_spec()
  return records.batch(batch_size).map(lambda batch: tf.io.parse_example(batch, spec),
                                       num_parallel_calls=tf.data.AUTOTUNE).prefetch(
                                           tf.data.AUTOTUNE)


def vocabulary_sizes(tf_transform_output, features) -> Dict[str, int]:
  return {f.name: tf_transform_output.vocabulary_size_by_name(f.name)
          for f in features if f.encoding in ("vocab", "multi")}


def training_pairs(dataset, tf_transform_output) -> Tuple[np.ndarray, np.ndarray]:
  """Every (user index, item index) pair of the transformed training split."""
  users, items = [], []
  for batch in dataset:
    users.append(batch[feats.USER_ID].numpy())
    items.append(batch[feats.ITEM_ID].numpy())
  return np.concatenate(users), np.concatenate(items)


def vocabulary(tf_transform_output, name: str) -> List[str]:
  return [v.decode() for v in tf_transform_output.vocabulary_by_name(name)]


def as_ids(indices: np.ndarray, tf_transform_output, name: str) -> np.ndarray:
  """Vocabulary indices back to raw id strings."""
  return np.array(vocabulary(tf_transform_output, name), dtype=object)[indices]


def run_fn(fn_args: tfx.components.FnArgs):
  run = config_lib.from_custom_config(config_lib.RetrievalRun, fn_args.custom_config or {})
  cfg, seed = run.trainer, run.seed
  tf.keras.utils.set_random_seed(seed)

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  all_features = feats.load_features(fn_args.schema_path)
  vocab_sizes = vocabulary_sizes(tf_transform_output, all_features)
  train = transformed_dataset(fn_args, fn_args.train_files, tf_transform_output,
                              cfg.batch_size, True, seed)
  evaluation = transformed_dataset(fn_args, fn_args.eval_files, tf_transform_output,
                                   cfg.batch_size, False, seed)
  user_index, item_index = training_pairs(train, tf_transform_output)
  data = canonical.read_canonical(run.data_dir)
  catalogue = export.catalogue_features(tf_transform_output, data.items, all_features)
  rows_of_items = selection.catalogue_rows(vocabulary(tf_transform_output, feats.ITEM_ID),
                                           data.items[feats.ITEM_ID].astype(str).tolist())
  seen = selection.seen_rows(user_index, item_index, rows_of_items)

  trained = Trained(run, fn_args, tf_transform_output, all_features, vocab_sizes, train,
                    evaluation, item_index, data)
  sources, chosen_by, history = [], {}, {}
  for name in cfg.candidate_models():
    towers, history[name], settings = trained.fit(name)
    source = export.Source(name, towers, selection.item_table(towers, catalogue))
    sources.append(source)
    chosen_by[name] = {**selection.evaluate(towers, source.item_table, evaluation,
                                            rows_of_items, seen), "settings": settings}
    print(f"Trainer: {name} on the eval split: NDCG@10 {chosen_by[name]['ndcg@10']:.4f}, "
          f"HR@10 {chosen_by[name]['hit_rate@10']:.4f}", flush=True)
    epochs_run = max(len(history[name].get("loss", [])) - 1, 0)
    tensorboard_logs.write_eval_metrics(trained.log_dir(name), chosen_by[name], epochs_run)
  names = [source.name for source in sources]
  primary = names.index(selection.choose(chosen_by, names))
  if len(names) > 1:
    print(f"Trainer: {names[primary]} is the primary retrieval model (best NDCG@10 on the "
          f"eval split); candidate sources: {', '.join(names)}", flush=True)

  # Serving state is fresh: a user's history is every interaction known now (all splits),
  # so a request by user id reads what the user did last. Evaluation never uses it: each
  # held-out example carries its own history, the items before it.
  histories = (retrieval_models.all_histories(data, seed, cfg.history_length)
               if cfg.reads_history() else None)
  interactions = export.TrainingInteractions(
      as_ids(user_index, tf_transform_output, feats.USER_ID),
      as_ids(item_index, tf_transform_output, feats.ITEM_ID))
  module = export.export_retrieval_model(fn_args.serving_model_dir, fn_args.eval_model_dir,
                                         tf_transform_output, sources, primary, all_features,
                                         data.items, data.users, cfg.top_k, interactions,
                                         histories, seed)
  # TF Serving's warm-up file: replayed before a version serves, so the first user
  # request does not pay for graph initialisation.
  users = data.interactions[feats.USER_ID].value_counts().index[:3].tolist()
  context = warmup.context_examples(data.interactions, module.context_names())
  warmup.write_warmup_requests(fn_args.serving_model_dir, contract.RETRIEVAL_MODEL,
                               contract.CANDIDATES_WITH_CONTEXT,
                               warmup.retrieval_warmup_inputs(users, context))
  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  with open(os.path.join(fn_args.model_run_dir, TRAINING_JSON), "w") as f:
    json.dump({"model": names[primary], "sources": names, "selection": chosen_by,
               "history": history, "item_vocabulary_size": vocab_sizes[feats.ITEM_ID],
               "catalogue_size": len(data.items), "index": module.config},
              f, indent=2, default=list)
  selection.write(fn_args.serving_model_dir, names[primary], chosen_by)
  # The training step functions live in reference cycles; freed at interpreter exit
  # instead, TensorFlow prints a traceback for each of them.
  gc.collect()


TRAINING_JSON = "training.json"


class Trained:
  """Fits one model of trainer.models at a time on the train split: two_tower on
  Transform's output with Keras, the others by their implementation in trainer/models/ on
  the same rows, indexed by Transform's vocabularies (trainer/retrieval_models.py)."""

  def __init__(self, run, fn_args, tf_transform_output, all_features, vocab_sizes, train,
               evaluation, item_index, data):
    self.run, self.cfg = run, run.trainer
    self.fn_args = fn_args
    self.tf_transform_output = tf_transform_output
    self.all_features, self.vocab_sizes = all_features, vocab_sizes
    self.train, self.evaluation = train, evaluation
    self.item_index, self.data = item_index, data
    self._split = None

  def split(self) -> protocol.Split:
    """The train split indexed by Transform's vocabularies (trainer/models/protocol.py)."""
    if self._split is None:
      self._split = protocol.make_split(
          self.data, seed=self.run.seed, min_to_hold_out=self.run.min_interactions_to_hold_out,
          fit_splits=("train",),
          vocabularies=(vocabulary(self.tf_transform_output, feats.USER_ID),
                        vocabulary(self.tf_transform_output, feats.ITEM_ID)))
    return self._split

  def log_dir(self, name: str) -> str:
    """Where model `name` writes its TensorBoard logs (trainer/tensorboard_logs.py)."""
    return tensorboard_logs.model_log_dir(self.fn_args.model_run_dir, name)

  def fit(self, name: str):
    """(towers, loss per epoch, the settings it was trained with)."""
    tf.keras.utils.set_random_seed(self.run.seed)
    steps = self.cfg.train_steps
    if name == "two_tower":
      return self._fit_two_tower(steps)
    if steps == 0:
      closed_form = "epochs" not in inspect.signature(registry.model_class(name)).parameters
      print(f"Trainer: train_steps=0, but {name} is fitted in closed form, not trained by steps"
            if closed_form else f"Trainer: train_steps=0, exporting an untrained {name}",
            flush=True)
    args = self.cfg.args_for(name)
    towers, fitted = retrieval_models.train(name, self.split(), args, self.cfg.history_length,
                                            self.run.seed,
                                            epochs_override=0 if steps == 0 else None)
    loss = {"loss": list(getattr(fitted, "loss_history", []))}  # baselines have none
    tensorboard_logs.write_history(self.log_dir(name), tensorboard_logs.TRAIN, loss)
    return towers, loss, {"model": name, **args}

  def _fit_two_tower(self, steps):
    cfg = self.cfg
    # How often each item index occurs in training, for the logQ correction.
    counts = np.bincount(self.item_index,
                         minlength=self.vocab_sizes[feats.ITEM_ID] + NUM_OOV_BUCKETS)
    model = TwoTowerModel(self.all_features, self.vocab_sizes, counts, cfg)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=cfg.learning_rate))
    history = {}
    if steps == 0:
      print("Trainer: train_steps=0, exporting an untrained two_tower", flush=True)
      model.compute_loss(next(iter(self.train)))  # builds the weights
    else:
      train_input = self.train.repeat().take(int(steps)) if steps else self.train
      result = model.fit(train_input, epochs=1 if steps else cfg.epochs,
                         validation_data=self.evaluation, verbose=2,
                         callbacks=tensorboard_logs.keras_callbacks(
                             self.log_dir("two_tower"), model))
      history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
    settings = {k: v for k, v in dataclasses.asdict(cfg).items()
                if k in {f.name for f in dataclasses.fields(config_lib.TwoTowerConfig)}}
    return model, history, {"model": "two_tower", **settings}
