"""Trainer entry point for the ranking stage (`run_fn`): train the configured ranker on
Transform's output and export a SavedModel that scores raw (user, item, context) batches.

Everything arrives in the Trainer's custom_config as a RankingRun (trainer/config.py):
the RankingConfig (architecture and its knobs, epochs, batch size, negative sampling,
features), the seed and the canonical data directory.
"""
import dataclasses
import json
import os
from typing import Any, Dict

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from recsys_tfx.schema import canonical
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import config as config_lib
from recsys_tfx.trainer import export, ranking_data, warmup
from recsys_tfx.trainer.models import rankers as ranking
from recsys_tfx.trainer.preprocessing import NUM_OOV_BUCKETS
from recsys_tfx.trainer.task import transformed_dataset, vocabulary_sizes


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


def training_data(dataset, sampler, cfg: config_lib.RankerConfig, rating_feature: str):
  if cfg.objective == "regression":
    return ranking_data.with_labels(dataset, rating_feature)
  return dataset.map(sampler, num_parallel_calls=tf.data.AUTOTUNE)


def run_fn(fn_args: tfx.components.FnArgs):
  run = config_lib.from_custom_config(config_lib.RankingRun, fn_args.custom_config or {})
  stage, seed = run.ranking, run.seed
  tf.keras.utils.set_random_seed(seed)
  cfg = stage.ranker()
  batch_size, epochs, steps = stage.batch_size, stage.epochs, stage.train_steps

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  all_features = selected_features(feats.load_features(fn_args.schema_path),
                                   stage.features)
  vocab_sizes = vocabulary_sizes(tf_transform_output, all_features)
  data = canonical.read_canonical(run.data_dir)
  module = export.RankingModule(tf_transform_output, all_features, data.items, data.users)

  train = transformed_dataset(fn_args, fn_args.train_files, tf_transform_output, batch_size,
                              True, seed)
  evaluation = transformed_dataset(fn_args, fn_args.eval_files, tf_transform_output,
                                   batch_size, False, seed)
  num_item_indices = vocab_sizes[feats.ITEM_ID] + NUM_OOV_BUCKETS
  catalogue = transformed_catalogue(module, data.items, all_features)
  sampler = ranking_data.NegativeSampler(
      catalogue, [f.name for f in feats.candidate_features(all_features)],
      ratio=stage.negative_ratio,
      seen_pairs=ranking_data.positive_pairs_table(train, num_item_indices),
      num_item_indices=num_item_indices, seed=seed,
      sampling_weights=ranking_data.sampling_probabilities(
          stage.negative_sampling,
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
      fn_args.serving_model_dir, contract.RANKING_MODEL, contract.RANKING_SIGNATURE,
      warmup.ranking_warmup_inputs(users, data.items[feats.ITEM_ID].tolist(), context,
                                   candidates=(1, 100)))
  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  with open(os.path.join(fn_args.model_run_dir, "training.json"), "w") as f:
    json.dump({"history": history, "ranker": config_lib.json_ready(dataclasses.asdict(cfg))},
              f, indent=2)
