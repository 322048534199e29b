"""The TFX DAG. This module only wires components; every knob is in pipeline/configs.py.

  TimeSplitExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> AnomalyGate
    -> Transform -> RetrievalTrainer (two-tower + ScaNN) -> RetrievalEvaluator (report)
                    -> RetrievalValidator (TFMA, vs LatestBlessedRetrievalModel)
                    -> RetrievalPusher (only a blessed model)
                 -> RankingTrainer (wide_deep | dcn | deepfm | ncf) -> RankingEvaluator (report)
                    -> RankingEvalExamples -> RankingValidator (TFMA, vs LatestBlessedRankingModel)
                    -> RankingPusher (only a blessed model)
"""
import os
from typing import List, Optional

from tfx import v1 as tfx

from components import time_split_example_gen as example_gen_lib
from components.anomaly_gate import AnomalyGate
from components.blessing_report import BlessingReport
from components.retrieval_evaluator import RetrievalEvaluator
from components.ranking_eval_examples import RankingEvalExamples
from components.ranking_evaluator import RankingEvaluator
from pipeline import configs, model_validation
from pipeline.configs import PipelineConfig
from trainer import features as feats

PREPROCESSING_FN = "trainer.preprocessing.preprocessing_fn"
RUN_FN = "trainer.task.run_fn"
RANKING_RUN_FN = "trainer.ranking_task.run_fn"
IN_PROCESS_BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def trainer_custom_config(config: PipelineConfig, data_dir: str) -> dict:
  t = config.trainer
  return {**t.__dict__, "hidden_units": list(t.hidden_units), "seed": config.seed,
          "data_dir": data_dir}


def ranking_custom_config(config: PipelineConfig, data_dir: str) -> dict:
  r = config.ranking
  return {**r.ranker_fields(), "epochs": r.epochs, "train_steps": r.train_steps,
          "batch_size": r.batch_size, "negative_ratio": r.negative_ratio,
          "negative_sampling": r.negative_sampling,
          "features": r.features, "seed": config.seed, "data_dir": data_dir}


def _pusher(model_channel, push_dir: str, blessing=None):
  return tfx.components.Pusher(
      model=model_channel,
      model_blessing=blessing,
      push_destination=tfx.proto.PushDestination(
          filesystem=tfx.proto.PushDestination.Filesystem(base_directory=push_dir)))


def create_pipeline(config: PipelineConfig, data_dir: str, schema_file: str,
                    metadata_connection_config=None,
                    beam_args: Optional[List[str]] = None) -> tfx.dsl.Pipeline:
  configs.validate_against_schema(config, feats.load_features(schema_file), schema_file)
  example_gen = example_gen_lib.TimeSplitExampleGen(
      input_base=data_dir,
      input_config=example_gen_lib.input_config(),
      output_config=example_gen_lib.output_config(),
      custom_config={"seed": config.seed, "schema_file": schema_file,
                     "min_interactions_to_hold_out": config.min_interactions_to_hold_out})
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"])

  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=schema_gen.outputs["schema"],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config={"schema_file": schema_file},
      disable_statistics=True)  # StatisticsGen already profiles the raw data
  transform.add_upstream_node(anomaly_gate)

  retrieval_trainer = tfx.components.Trainer(
      run_fn=RUN_FN,
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema_gen.outputs["schema"],
      train_args=tfx.proto.TrainArgs(splits=["train"]),
      eval_args=tfx.proto.EvalArgs(splits=["eval"]),
      custom_config=trainer_custom_config(config, data_dir)).with_id("RetrievalTrainer")

  retrieval_evaluator = RetrievalEvaluator(
      examples=example_gen.outputs["examples"],
      model=retrieval_trainer.outputs["model"],
      schema=schema_gen.outputs["schema"],
      seed=config.seed)
  # TFMA judges the new model against thresholds and the latest blessed retrieval model.
  baseline = tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                            producer_component_id="RetrievalTrainer"),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                     producer_component_id="RetrievalValidator"),
  ).with_id("LatestBlessedRetrievalModel")
  retrieval_validator = tfx.components.Evaluator(
      examples=example_gen.outputs["examples"],
      model=retrieval_trainer.outputs["model"],
      baseline_model=baseline.outputs["model"],
      eval_config=model_validation.eval_config(config.validation),
      example_splits=["test"]).with_id("RetrievalValidator")
  # In-process Beam: TFMA loads the SavedModel, whose ScaNN ops are registered only where
  # scann was imported (components/tfma_metrics.py), i.e. this process, not fresh workers.
  retrieval_validator.with_beam_pipeline_args(IN_PROCESS_BEAM)
  retrieval_pusher = _pusher(retrieval_trainer.outputs["model"], config.push_dir("retrieval"),
                             retrieval_validator.outputs["blessing"]).with_id("RetrievalPusher")
  retrieval_pusher.add_upstream_node(retrieval_evaluator)
  retrieval_report = BlessingReport(
      evaluation=retrieval_validator.outputs["evaluation"],
      blessing=retrieval_validator.outputs["blessing"]).with_id("RetrievalBlessingReport")
  components = [example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate,
                transform, retrieval_trainer, retrieval_evaluator, baseline,
                retrieval_validator, retrieval_report, retrieval_pusher]

  if config.ranking.enabled:
    ranking_trainer = tfx.components.Trainer(
        run_fn=RANKING_RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=ranking_custom_config(config, data_dir)).with_id("RankingTrainer")
    ranking_evaluator = RankingEvaluator(
        examples=example_gen.outputs["examples"],
        retrieval_model=retrieval_trainer.outputs["model"],
        ranking_model=ranking_trainer.outputs["model"],
        schema=schema_gen.outputs["schema"],
        seed=config.seed)
    ranking_examples = RankingEvalExamples(
        examples=example_gen.outputs["examples"], schema=schema_gen.outputs["schema"],
        data_dir=data_dir, negatives=config.validation.ranking_negatives,
        sampling=config.ranking.negative_sampling, seed=config.seed)
    ranking_baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                              producer_component_id="RankingTrainer"),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                       producer_component_id="RankingValidator"),
    ).with_id("LatestBlessedRankingModel")
    ranking_validator = tfx.components.Evaluator(
        examples=ranking_examples.outputs["ranking_examples"],
        model=ranking_trainer.outputs["model"],
        baseline_model=ranking_baseline.outputs["model"],
        eval_config=model_validation.ranking_eval_config(config.validation),
        example_splits=["test"]).with_id("RankingValidator")
    ranking_validator.with_beam_pipeline_args(IN_PROCESS_BEAM)
    ranking_pusher = _pusher(ranking_trainer.outputs["model"], config.push_dir("ranking"),
                             ranking_validator.outputs["blessing"]).with_id("RankingPusher")
    ranking_pusher.add_upstream_node(ranking_evaluator)
    ranking_report = BlessingReport(
        evaluation=ranking_validator.outputs["evaluation"],
        blessing=ranking_validator.outputs["blessing"]).with_id("RankingBlessingReport")
    components += [ranking_trainer, ranking_evaluator, ranking_examples, ranking_baseline,
                   ranking_validator, ranking_report, ranking_pusher]

  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=configs.resolve(config.pipeline_root),
      components=components,
      enable_cache=False,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_args if beam_args is not None else config.beam_args)
