"""The TFX DAG. This module only wires components; every knob is in pipeline/configs.py.

  TimeSplitExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> AnomalyGate
    -> Transform -> RetrievalTrainer (trainer.models: each trained, the best on the eval
                                      split is the primary, all are candidate sources)
                    -> RetrievalEvaluator (report: HR/NDCG vs popularity, ScaNN recall)
                    -> RetrievalValidator (TFMA, vs LatestBlessedRetrievalModel)
                    -> RetrievalPusher (AtomicPusher: only a blessed model, never half-visible)
                 -> RankingTrainer (wide_deep | dcn | deepfm | ncf, on candidate lists)
                    -> RankingEvalExamples (the retrieval model's lists for held-out users)
                    -> RankingValidator (TFMA report, vs LatestBlessedRankingModel)
                    -> RankingGate (beats the retrieval order? the last blessed ranker?)
                    -> RankingPusher (AtomicPusher: only a blessed ranker)
  -> RecommenderComposer (after the pushers: the live retrieval + ranking versions composed
                          into one `recommender` servable, the whole funnel in one Predict)
"""
from typing import List, Optional

from tfx import v1 as tfx

from recsys_tfx.components.anomaly_gate.component import AnomalyGate
from recsys_tfx.components.atomic_pusher.component import AtomicPusher
from recsys_tfx.components.blessing_report.component import BlessingReport
from recsys_tfx.components.ingest import spans
from recsys_tfx.components.ranking_eval_examples.component import RankingEvalExamples
from recsys_tfx.components.ranking_gate.component import RankingGate
from recsys_tfx.components.recommender_composer.component import RecommenderComposer
from recsys_tfx.components.retrieval_evaluator.component import RetrievalEvaluator
from recsys_tfx.components.time_split_example_gen.component import TimeSplitExampleGen
from recsys_tfx.pipeline import configs, model_validation
from recsys_tfx.pipeline.configs import PipelineConfig
from recsys_tfx.schema import features as feats
from recsys_tfx.schema.export_contract import RANKING_MODEL, RETRIEVAL_MODEL
from recsys_tfx.trainer import config as trainer_config

PREPROCESSING_FN = "recsys_tfx.trainer.preprocessing.preprocessing_fn"
RUN_FN = "recsys_tfx.trainer.task.run_fn"
RANKING_RUN_FN = "recsys_tfx.trainer.ranking_task.run_fn"
IN_PROCESS_BEAM = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]


def trainer_custom_config(config: PipelineConfig, data_dir: str) -> dict:
  return trainer_config.to_custom_config(trainer_config.RetrievalRun(
      config.trainer, config.seed, data_dir, config.min_interactions_to_hold_out))


def ranking_custom_config(config: PipelineConfig, data_dir: str) -> dict:
  return trainer_config.to_custom_config(trainer_config.RankingRun(
      config.ranking, config.trainer, config.seed, data_dir,
      config.min_interactions_to_hold_out))


def span_options(config: PipelineConfig, data_spans: Optional[List[spans.Span]]) -> dict:
  """TimeSplitExampleGen's span arguments: the pattern and window (also in a compiled
  Kubeflow spec) and the spans this run read, when the data is spans:<pattern>."""
  if not spans.is_span_source(config.data):
    return {}
  return {"span_pattern": configs.resolve(spans.pattern_of(config.data)),
          "window_spans": config.data_spans.window_spans,
          "skip_bad_spans": config.data_spans.skip_bad_spans,
          "spans": [(s.number, s.path) for s in data_spans or []]}


def _trainer(name: str, run_fn: str, transform, schema_gen, custom_config: dict):
  return tfx.components.Trainer(
      run_fn=run_fn,
      examples=transform.outputs["transformed_examples"],
      transform_graph=transform.outputs["transform_graph"],
      schema=schema_gen.outputs["schema"],
      train_args=tfx.proto.TrainArgs(splits=["train"]),
      eval_args=tfx.proto.EvalArgs(splits=["eval"]),
      custom_config=custom_config).with_id(f"{name}Trainer")


def _latest_blessed(name: str, blessed_by: str):
  return tfx.dsl.Resolver(
      strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
      model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model,
                            producer_component_id=f"{name}Trainer"),
      model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing,
                                     producer_component_id=blessed_by),
  ).with_id(f"LatestBlessed{name}Model")


def runs_in_direct_runner(beam_args: List[str]) -> bool:
  """Whether Beam args name no runner (Beam's default, the DirectRunner) or the
  DirectRunner itself; the last --runner wins, as in Beam's option parsing."""
  runners = [a.split("=", 1)[1] for a in beam_args if a.startswith("--runner=")]
  return not runners or runners[-1] in ("DirectRunner", "direct")


def evaluator_beam_args(beam_args: List[str]) -> List[str]:
  """The Evaluator's component-level Beam args (TFX appends them to the pipeline's).

  On the DirectRunner, TFMA runs in this process (IN_PROCESS_BEAM): it loads the
  SavedModel, whose ScaNN ops are registered only where scann was imported
  (components/tfma_metrics.py), i.e. here, not in multi-processing workers. On a
  distributed runner (Dataflow, Flink, Spark) nothing is added, so the pipeline's runner
  evaluates at scale: its workers run the pipeline image, which must import scann (the
  project's code does, through components/tfma_metrics.py) for the model to load."""
  return list(IN_PROCESS_BEAM) if runs_in_direct_runner(beam_args) else []


def _tfma(name: str, trainer, examples, eval_config, baseline, split: str,
          beam_args: List[str]):
  validator = tfx.components.Evaluator(
      examples=examples, model=trainer.outputs["model"],
      baseline_model=baseline.outputs["model"], eval_config=eval_config,
      example_splits=[split]).with_id(f"{name}Validator")
  own_args = evaluator_beam_args(beam_args)
  if own_args:
    validator.with_beam_pipeline_args(own_args)
  return validator


def _pusher(name: str, trainer, blessing, push_dir: str):
  return AtomicPusher(model=trainer.outputs["model"], model_blessing=blessing,
                      base_directory=push_dir).with_id(f"{name}Pusher")


def create_pipeline(config: PipelineConfig, data_dir: str, schema_file: str,
                    metadata_connection_config=None,
                    beam_args: Optional[List[str]] = None, enable_cache: bool = True,
                    code_version: str = "",
                    data_spans: Optional[List[spans.Span]] = None) -> tfx.dsl.Pipeline:
  """The DAG. With enable_cache, a component whose inputs and properties match an
  execution that completed is not run again (TFX's cache): a rerun resumes. code_version
  (pipeline/run_state.py) is part of the first component's properties, so outputs of
  other code are never reused. data_spans: the dated spans data_dir was read from
  (components/ingest/spans.py), recorded on the Examples artifact."""
  configs.validate_against_schema(config, feats.load_features(schema_file), schema_file)
  beam_args = beam_args if beam_args is not None else config.beam_args
  example_gen = TimeSplitExampleGen(
      input_base=data_dir, schema_file=schema_file, seed=config.seed,
      min_interactions_to_hold_out=config.min_interactions_to_hold_out,
      history_length=config.history_length, code_version=code_version,
      **span_options(config, data_spans))
  statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
  schema_gen = tfx.components.ImportSchemaGen(schema_file=schema_file)
  example_validator = tfx.components.ExampleValidator(
      statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])
  anomaly_gate = AnomalyGate(anomalies=example_validator.outputs["anomalies"])

  transform = tfx.components.Transform(
      examples=example_gen.outputs["examples"],
      schema=schema_gen.outputs["schema"],
      preprocessing_fn=PREPROCESSING_FN,
      custom_config={"schema_file": schema_file, "history_length": config.history_length},
      disable_statistics=True)  # StatisticsGen already profiles the raw data
  transform.add_upstream_node(anomaly_gate)

  retrieval_trainer = _trainer("Retrieval", RUN_FN, transform, schema_gen,
                               trainer_custom_config(config, data_dir))
  retrieval_evaluator = RetrievalEvaluator(
      examples=example_gen.outputs["examples"],
      model=retrieval_trainer.outputs["model"],
      schema=schema_gen.outputs["schema"],
      seed=config.seed)
  components = [example_gen, statistics_gen, schema_gen, example_validator, anomaly_gate,
                transform, retrieval_trainer, retrieval_evaluator]
  # TFMA judges the retrieval model against thresholds and the latest blessed one; a
  # BlessingReport records why; the Pusher pushes only a blessed model.
  retrieval_baseline = _latest_blessed("Retrieval", "RetrievalValidator")
  retrieval_validator = _tfma("Retrieval", retrieval_trainer, example_gen.outputs["examples"],
                              model_validation.eval_config(config.validation),
                              retrieval_baseline, "test", beam_args)
  retrieval_report = BlessingReport(
      evaluation=retrieval_validator.outputs["evaluation"],
      blessing=retrieval_validator.outputs["blessing"]).with_id("RetrievalBlessingReport")
  retrieval_pusher = _pusher("Retrieval", retrieval_trainer,
                             retrieval_validator.outputs["blessing"],
                             config.push_dir(RETRIEVAL_MODEL))
  retrieval_pusher.add_upstream_node(retrieval_evaluator)
  components += [retrieval_baseline, retrieval_validator, retrieval_report, retrieval_pusher]

  ranking_pusher = None
  if config.ranking.enabled:
    # The ranker is judged on the held-out users' candidate lists from this run's
    # retrieval model: TFMA reports, the RankingGate decides (it must beat the retrieval
    # order and the last blessed ranker).
    ranking_trainer = _trainer("Ranking", RANKING_RUN_FN, transform, schema_gen,
                               ranking_custom_config(config, data_dir))
    ranking_examples = RankingEvalExamples(
        examples=example_gen.outputs["examples"],
        retrieval_model=retrieval_trainer.outputs["model"],
        schema=schema_gen.outputs["schema"], data_dir=data_dir, seed=config.seed,
        sample_users=config.validation.ranking_tfma_users)
    ranking_baseline = _latest_blessed("Ranking", "RankingGate")
    ranking_validator = _tfma("Ranking", ranking_trainer,
                              ranking_examples.outputs["ranking_examples"],
                              model_validation.ranking_eval_config(config.validation),
                              ranking_baseline, "sample", beam_args)
    gate = RankingGate(
        ranking_examples=ranking_examples.outputs["ranking_examples"],
        model=ranking_trainer.outputs["model"],
        baseline_model=ranking_baseline.outputs["model"],
        retrieval_blessing=retrieval_validator.outputs["blessing"],
        min_rerank_lift=config.validation.min_rerank_lift,
        max_regression=config.validation.max_ranking_regression)
    gate.add_upstream_node(ranking_validator)  # TFMA's report first, in the run's order
    ranking_pusher = _pusher("Ranking", ranking_trainer, gate.outputs["blessing"],
                             config.push_dir(RANKING_MODEL))
    components += [ranking_trainer, ranking_examples, ranking_baseline, ranking_validator,
                   gate, ranking_pusher]

  # Composes what is live after this run's pushes (a ranker refused now leaves the last
  # blessed one live), so it runs whichever stage was pushed.
  components.append(RecommenderComposer(
      retrieval_pushed=retrieval_pusher.outputs["pushed_model"],
      ranking_pushed=ranking_pusher.outputs["pushed_model"] if ranking_pusher else None,
      serving_dir=configs.resolve(config.serving_dir), data_dir=data_dir))

  return tfx.dsl.Pipeline(
      pipeline_name=config.pipeline_name,
      pipeline_root=configs.resolve(config.pipeline_root),
      components=components,
      enable_cache=enable_cache,
      metadata_connection_config=metadata_connection_config,
      beam_pipeline_args=beam_args)
