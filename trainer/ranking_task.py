"""Trainer entry point for the ranking stage (`run_fn`): train the configured ranker on
lists of the candidates the retrieval stage produces, and export a SavedModel that scores
one user's candidates (ids, context and each source's score and rank).

The lists come from the retrieval stage's models (trainer.models, the candidate sources)
fitted on an earlier window, so none of them saw the interaction a list is made of
(trainer/candidate_lists.py); the ranker learns with a listwise (or pointwise) loss
(trainer/list_training.py).

Everything arrives in the Trainer's custom_config as a RankingRun (trainer/config.py):
the RankingConfig, the retrieval stage's TrainerConfig, the seed, the canonical data
directory and the split's min_interactions_to_hold_out.
"""
import dataclasses
import json
import os
from typing import Dict

import tensorflow as tf
import tensorflow_transform as tft
from tfx import v1 as tfx

from recsys_tfx.schema import canonical
from recsys_tfx.schema import export_contract as contract
from recsys_tfx.schema import features as feats
from recsys_tfx.trainer import (candidate_lists, list_training, retrieval_models,
                                tensorboard_logs, warmup)
from recsys_tfx.trainer import config as config_lib
from recsys_tfx.trainer import export
from recsys_tfx.trainer.models import protocol
from recsys_tfx.trainer.models import rankers as ranking
from recsys_tfx.trainer.models.two_tower import TwoTower
from recsys_tfx.trainer.task import TRAINING_JSON, vocabulary_sizes


def selected_features(all_features, names):
  """The schema's features, or only the named ones (ids and non-tower roles always kept)."""
  if not names:
    return all_features
  keep = set(names) | {feats.USER_ID, feats.ITEM_ID}
  return [f for f in all_features if f.name in keep or f.role not in feats.TOWER_ROLES]


def source_factory(name: str, trainer: config_lib.TrainerConfig, schema_name: str):
  """A function making a fresh candidate source `name`, configured as the retrieval
  stage configures it (two_tower: its trainer keys; the others: model_args)."""
  if name == "two_tower":
    return lambda: TwoTower(schema_name, epochs=trainer.epochs, batch_size=trainer.batch_size,
                            learning_rate=trainer.learning_rate,
                            embedding_dim=trainer.embedding_dim, output_dim=trainer.output_dim)
  return lambda: retrieval_models.build(name, trainer.args_for(name), trainer.history_length)


def make_lists(run: config_lib.RankingRun, data, log=print):
  """(training lists, validation lists, dropped count): candidate lists of the sources
  fitted on the earlier window."""
  split = protocol.make_split(data, seed=run.seed,
                              min_to_hold_out=run.min_interactions_to_hold_out)
  earlier, targets = candidate_lists.hold_back(split, run.ranking.list_targets)
  names = run.trainer.candidate_models()
  log(f"RankingTrainer: fitting the candidate sources {', '.join(names)} on the earlier "
      f"window ({len(earlier.fit_items):,} interactions; {len(targets.items):,} held back)")
  sources = candidate_lists.fit_sources(
      earlier, [source_factory(n, run.trainer, data.schema_name) for n in names], run.seed)
  lists, dropped = candidate_lists.build(earlier, targets, sources, run.trainer.top_k, log=log)
  return (candidate_lists.select(lists, ~lists.latest),
          candidate_lists.select(lists, lists.latest), dropped)


def epoch_logger(model_run_dir: str, architecture: str):
  """ListTrainer.fit's on_epoch_end: the loss to <model_run_dir>/<architecture>/train, the
  validation lists' NDCG@10 to .../validation (trainer/tensorboard_logs.py)."""
  log_dir = tensorboard_logs.model_log_dir(model_run_dir, architecture)
  train = tensorboard_logs.EpochScalars(log_dir, tensorboard_logs.TRAIN)
  validation = tensorboard_logs.EpochScalars(log_dir, tensorboard_logs.VALIDATION)

  def log(epoch: int, values: Dict[str, float]) -> None:
    train.write(epoch, {"loss": values["loss"]})
    validation.write(epoch, {name: value for name, value in values.items() if name != "loss"})
  return log


def run_fn(fn_args: tfx.components.FnArgs):
  run = config_lib.from_custom_config(config_lib.RankingRun, fn_args.custom_config or {})
  stage, seed = run.ranking, run.seed
  tf.keras.utils.set_random_seed(seed)
  cfg = stage.ranker()

  tf_transform_output = tft.TFTransformOutput(fn_args.transform_graph_path)
  all_features = selected_features(feats.load_features(fn_args.schema_path), stage.features)
  vocab_sizes = vocabulary_sizes(tf_transform_output, all_features)
  data = canonical.read_canonical(run.data_dir)
  names = run.trainer.candidate_models()
  module = export.RankingModule(tf_transform_output, all_features, data.items, data.users,
                                names)
  log = lambda message: print(message, flush=True)
  train, validation, dropped = make_lists(run, data, log)

  model = ranking.build_ranker(cfg, all_features, vocab_sizes,
                               source_stats=list_training.source_stats(train))
  context = {name: module.raw_spec[name].dtype for name in module.context_names()}
  trainer = list_training.ListTrainer(module, model, stage.loss, cfg.learning_rate, context,
                                      log)
  history = trainer.fit(train, validation, stage.epochs, stage.batch_size, seed,
                        stage.train_steps,
                        on_epoch_end=epoch_logger(fn_args.model_run_dir, cfg.architecture))
  by_source = list_training.source_orders(validation)
  ranker = trainer.evaluate(validation)
  log(f"RankingTrainer: validation lists ({len(validation):,}): ranker NDCG@10 "
      f"{ranker['ndcg@10']:.4f}; " + ", ".join(
          f"{names[s]} order {m['ndcg@10']:.4f}" for s, m in by_source.items()))

  module.attach(model)
  export.save(module, fn_args.serving_model_dir)
  users = data.interactions[feats.USER_ID].value_counts().index[:3].tolist()
  warmup.write_warmup_requests(  # replayed by TF Serving before the version serves
      fn_args.serving_model_dir, contract.RANKING_MODEL, contract.RANKING_SIGNATURE,
      warmup.ranking_warmup_inputs(users, data.items[feats.ITEM_ID].tolist(),
                                   warmup.context_examples(data.interactions,
                                                           module.context_names()),
                                   len(names), candidates=(1, 100)))
  os.makedirs(fn_args.model_run_dir, exist_ok=True)
  with open(os.path.join(fn_args.model_run_dir, TRAINING_JSON), "w") as f:
    json.dump({"history": history, "ranker": config_lib.json_ready(dataclasses.asdict(cfg)),
               "loss": stage.loss, "sources": names,
               "lists": {"train": len(train), "validation": len(validation),
                         "dropped_without_the_held_back_item": dropped},
               "validation": {"ranker": ranker,
                              **{f"{names[s]}_order": m for s, m in by_source.items()}}},
              f, indent=2)
