"""Trainer entry point for the ranking stage (`run_fn`): train the configured ranker on
Transform's output and export a SavedModel that scores raw (user, item, context) batches.

custom_config keys: the RankerConfig fields (architecture, embedding_dim, ...), plus
epochs, batch_size, negative_ratio (implicit feedback), train_steps, seed, data_dir.
"""
import json
import os
from typing import Any, Dict

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from components.ingest import dataset as canonical
from serving import warmup
from trainer import export
from trainer import features as feats
from trainer import ranking
from trainer import ranking_data
from trainer.preprocessing import NUM_OOV_BUCKETS
from trainer.task import transformed_dataset, vocabulary_sizes


def ranker_config(config: Dict[str, Any]) -> ranking.RankerConfig:
  known = {k: config[k] for k in ranking.RankerConfig.__dataclass_fields__ if k in config}
  result = ranking.RankerConfig(**known)
  ranking.validate_config(result)
  return result


def selected_features(all_features, names):
  """The schema's features, or only the named ones (ids and non-tower roles always kept)."""
  if not names:
    return all_features
  keep = set(names) | {feats.USER_ID, feats.ITEM_ID}
  return [f for f in all_features if f.name in keep or f.role not in feats.TOWER_ROLES]


def transformed_catalogue(module: export.RawFeatureModule, items, all_features) -> Dict[str, Any]:
  """Transform's output for every catalogue item's own features (negatives are drawn here)."""
  item_features = feats.candidate_features(all_features)
  raw_items = export.catalogue_raw_features(items, module.raw_spec, item_features)
  transformed = module.tft_layer(export.raw_batch(module.raw_spec, raw_items, len(items)))
  return {f.name: transformed[f.name] for f in item_features}


def catalogue_counts(train, catalogue_item_index: np.ndarray, num_item_indices: int):
  """Training interactions per catalogue row (rows map to item vocabulary indices)."""
  counts = np.zeros(num_item_indices)
  for batch in train:
    np.add.at(counts, batch[feats.ITEM_ID].numpy(), 1)
  return counts[catalogue_item_index]


def training_data(dataset, sampler, cfg: ranking.RankerConfig, rating_feature: str):
  if cfg.objective == "regression":
    return ranking_data.with_labels(dataset, rating_feature)
  return dataset.map(sampler, num_parallel_calls=tf.data.AUTOTUNE)


def run_fn(fn_args: tfx.components.FnArgs):
  config = dict(fn_args.custom_config or {})
  seed = int(config.get("seed", 0))
  tf.keras.utils.set_random_seed(seed)
  cfg = ranker_config(config)
  batch_size = int(config.get("batch_size", 1024))
  epochs = int(config.get("epochs", 3))
  steps = config.get("train_steps")

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  all_features = selected_features(feats.load_features(fn_args.schema_path),
                                   config.get("features"))
  vocab_sizes = vocabulary_sizes(tf_transform_output, all_features)
  data = canonical.read_canonical(config["data_dir"])
  module = export.RankingModule(tf_transform_output, all_features, data.items, data.users)

  train = transformed_dataset(fn_args, fn_args.train_files, tf_transform_output, batch_size,
                              True, seed)
  evaluation = transformed_dataset(fn_args, fn_args.eval_files, tf_transform_output,
                                   batch_size, False, seed)
  num_item_indices = vocab_sizes[feats.ITEM_ID] + NUM_OOV_BUCKETS
  catalogue = transformed_catalogue(module, data.items, all_features)
  sampler = ranking_data.NegativeSampler(
      catalogue, [f.name for f in feats.candidate_features(all_features)],
      ratio=int(config.get("negative_ratio", 4)),
      seen_pairs=ranking_data.positive_pairs_table(train, num_item_indices),
      num_item_indices=num_item_indices, seed=seed,
      sampling_weights=ranking_data.sampling_probabilities(
          config.get("negative_sampling", "uniform"),
          catalogue_counts(train, catalogue[feats.ITEM_ID].numpy(), num_item_indices)))
  rating = next((f.name for f in all_features if f.role == "rating"), feats.LABEL)

  model = ranking.build_ranker(cfg, all_features, vocab_sizes)
  model.compile(optimizer=tf.keras.optimizers.Adam(cfg.learning_rate),
                loss=ranking.ranking_loss(cfg), metrics=ranking.ranking_metrics(cfg))
  train_data = training_data(train, sampler, cfg, rating)
  history = {}
  if steps == 0:
    print("RankingTrainer: train_steps=0, exporting an untrained model", flush=True)
    model(next(iter(train_data))[0])  # builds the weights
  else:
    result = model.fit(train_data.repeat().take(int(steps)) if steps else train_data,
                       epochs=1 if steps else epochs,
                       validation_data=training_data(evaluation, sampler, cfg, rating), verbose=2)
    history = {k: [float(v) for v in vals] for k, vals in result.history.items()}

  module.attach(model, cfg.objective)
  export.save(module, fn_args.serving_model_dir)
  users = data.interactions[feats.USER_ID].value_counts().index[:3].tolist()
  context = warmup.context_examples(data.interactions, module.context_names())
  warmup.write_warmup_requests(  # replayed by TF Serving before the version serves
      fn_args.serving_model_dir, "ranking", "serving_default",
      warmup.ranking_warmup_inputs(users, data.items[feats.ITEM_ID].tolist(), context,
                                   candidates=(1, 100)))
  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  with open(os.path.join(fn_args.model_run_dir, "training.json"), "w") as f:
    json.dump({"history": history, "ranker": dataclasses_as_dict(cfg)}, f, indent=2)


def dataclasses_as_dict(cfg) -> Dict[str, Any]:
  return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}
