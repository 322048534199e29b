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
from recsys_tfx.trainer import export, registry, retrieval_models, warmup
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
  batch_size, epochs, top_k = cfg.batch_size, cfg.epochs, cfg.top_k

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  all_features = feats.load_features(fn_args.schema_path)
  vocab_sizes = vocabulary_sizes(tf_transform_output, all_features)

  train = transformed_dataset(fn_args, fn_args.train_files, tf_transform_output, batch_size,
                              True, seed)
  evaluation = transformed_dataset(fn_args, fn_args.eval_files, tf_transform_output,
                                   batch_size, False, seed)
  user_index, item_index = training_pairs(train, tf_transform_output)
  # How often each item index occurs in training, for the logQ correction.
  counts = np.bincount(item_index, minlength=vocab_sizes[feats.ITEM_ID] + NUM_OOV_BUCKETS)

  data = canonical.read_canonical(run.data_dir)
  name, steps = cfg.model, cfg.train_steps
  history = {}
  histories = None
  if name == "two_tower":
    model = TwoTowerModel(all_features, vocab_sizes, counts, cfg)
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate=cfg.learning_rate))
    if steps == 0:
      print("Trainer: train_steps=0, exporting an untrained model", flush=True)
      model.compute_loss(next(iter(train)))  # builds the weights
    else:
      train_input = train.repeat().take(int(steps)) if steps else train
      result = model.fit(train_input, epochs=1 if steps else epochs,
                         validation_data=evaluation, verbose=2)
      history = {k: [float(v) for v in vals] for k, vals in result.history.items()}
    model_settings = dataclasses.asdict(cfg)
  else:
    # The same train split, indexed by Transform's vocabularies (trainer/models/protocol.py).
    split = protocol.make_split(
        data, seed=seed, min_to_hold_out=run.min_interactions_to_hold_out,
        fit_splits=("train",),
        vocabularies=(vocabulary(tf_transform_output, feats.USER_ID),
                      vocabulary(tf_transform_output, feats.ITEM_ID)))
    history_length = cfg.history_length
    if steps == 0:
      closed_form = "epochs" not in inspect.signature(registry.model_class(name)).parameters
      print(f"Trainer: train_steps=0, but {name} is fitted in closed form, not trained by steps"
            if closed_form else f"Trainer: train_steps=0, exporting an untrained {name}",
            flush=True)
    model, fitted = retrieval_models.train(name, split, cfg.model_args or {},
                                           history_length, seed,
                                           epochs_override=0 if steps == 0 else None)
    history = {"loss": list(getattr(fitted, "loss_history", []))}  # baselines have none
    model_settings = {"model": name, **(cfg.model_args or {})}
    if name in registry.HISTORY_MODELS:
      histories = retrieval_models.recent_histories(split, history_length)

  interactions = export.TrainingInteractions(
      as_ids(user_index, tf_transform_output, feats.USER_ID),
      as_ids(item_index, tf_transform_output, feats.ITEM_ID))
  module = export.export_retrieval_model(fn_args.serving_model_dir, fn_args.eval_model_dir,
                                         tf_transform_output, model, all_features, data.items,
                                         data.users, top_k, interactions, histories, seed)
  # TF Serving's warm-up file: replayed before a version serves, so the first user
  # request does not pay for graph initialisation.
  users = data.interactions[feats.USER_ID].value_counts().index[:3].tolist()
  context = warmup.context_examples(data.interactions, module.context_names())
  warmup.write_warmup_requests(fn_args.serving_model_dir, contract.RETRIEVAL_MODEL,
                               contract.RECOMMEND_WITH_CONTEXT,
                               warmup.retrieval_warmup_inputs(users, context))
  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  with open(os.path.join(fn_args.model_run_dir, "training.json"), "w") as f:
    json.dump({"history": history, "item_vocabulary_size": vocab_sizes[feats.ITEM_ID],
               "catalogue_size": len(data.items), "index": module.config,
               "model": name, "model_config": model_settings}, f, indent=2, default=list)
  # The training step functions live in reference cycles; freed at interpreter exit
  # instead, TensorFlow prints a traceback for each of them.
  gc.collect()
