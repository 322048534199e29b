"""Validation config: bad metric names, Ks and slice features fail when the pipeline is
built, naming the bad value; a good config becomes a TFMA EvalConfig with thresholds."""
import os

import pytest

from recsys_tfx.pipeline import configs, model_validation
from recsys_tfx.pipeline.pipeline import create_pipeline
from recsys_tfx.schema import features as feats

SCHEMA = os.path.join(feats.SCHEMA_DIR, "synthetic", "schema.pbtxt")


def _build(tmp_path, **validation):
  config = configs.load(None, {"pipeline_root": str(tmp_path)})
  for key, value in validation.items():
    setattr(config.validation, key, value)
  return create_pipeline(config, str(tmp_path), SCHEMA)


@pytest.mark.parametrize("field, value, expected", [
    ("metrics", ["hit_rate", "precision"], "'precision'"),
    ("ks", [10, 0], "0"),
    ("ks", [10, "ten"], "'ten'"),
    ("slices", ["item_popularity", "shoe_size"], "'shoe_size'"),
    ("thresholds", {"ndcg@ten": 0.1}, "ndcg@ten"),
    ("thresholds", {"mrr@10": 0.1}, "mrr@10"),
    ("max_regression", {"hit_rate@-1": 0.1}, "hit_rate@-1"),
])
def test_bad_validation_config_fails_at_construction(tmp_path, field, value, expected):
  with pytest.raises(configs.ConfigError) as error:
    _build(tmp_path, **{field: value})
  assert expected in str(error.value)


def test_eval_config_has_thresholds_popularity_fails():
  config = configs.load(None)
  eval_config = model_validation.eval_config(config.validation)
  metrics = {m.config: m for m in eval_config.metrics_specs[0].metrics}
  lift = next(m for c, m in metrics.items() if '"hit_rate_lift"' in c)
  bound = lift.per_slice_thresholds[0].threshold.value_threshold.lower_bound.value
  assert bound > 0  # a popularity model has lift exactly 0
  assert {s.feature_keys[0] for s in eval_config.slicing_specs if s.feature_keys} == {
      "item_popularity", "user_activity", "daypart"}


def test_ranking_config_errors_name_the_allowed_values(tmp_path):
  with pytest.raises(configs.ConfigError, match="architecture.*'transformer'.*dcn"):
    configs.load(None, {"ranking.architecture": "transformer"})
  with pytest.raises(configs.ConfigError, match="ranking.loss must be one of listwise, "
                                                 "pointwise; got 'pairwise'"):
    configs.load(None, {"ranking.loss": "pairwise"})
  with pytest.raises(configs.ConfigError, match="list_targets must be an integer >= 1"):
    configs.load(None, {"ranking.list_targets": 0})
  with pytest.raises(configs.ConfigError, match="objective must be binary"):
    configs.load(None, {"ranking.objective": "regression"})
  config = configs.load(None, {"pipeline_root": str(tmp_path)})
  config.ranking.features = ["age", "favourite_colour"]
  with pytest.raises(configs.ConfigError, match="favourite_colour"):
    create_pipeline(config, str(tmp_path), SCHEMA)


@pytest.mark.parametrize("value", [1.5, -2, "a lot", True])
def test_min_rerank_lift_outside_minus_one_to_one_is_refused(value):
  with pytest.raises(configs.ConfigError, match=r"min_rerank_lift must be a number in \[-1, 1\]"):
    configs.load(None, {"validation": {"min_rerank_lift": value}})


def test_min_rerank_lift_inside_the_range_is_kept():
  assert configs.load(None, {"validation": {"min_rerank_lift": -0.5}}).validation.min_rerank_lift \
      == -0.5


@pytest.mark.parametrize("models, message", [
    (["sasrec", "wavenet"], r"trainer.models: unknown model\(s\) \['wavenet'\]; allowed: two_tower"),
    (["sasrec", "sasrec"], "lists a model twice"),
    ([], "non-empty list of model names"),
    ("sasrec", "non-empty list of model names"),
])
def test_unknown_models_in_trainer_models_are_refused_naming_the_allowed(models, message):
  with pytest.raises(configs.ConfigError, match=message):
    configs.load(None, {"trainer.models": models})


def test_model_args_with_models_map_each_model_to_its_knobs():
  config = configs.load(None, {"trainer.models": ["sasrec", "ease"],
                               "trainer.model_args": {"sasrec": {"epochs": 2}}})
  assert config.trainer.args_for("sasrec") == {"epochs": 2} and config.trainer.args_for("ease") == {}
  assert config.trainer.reads_history() and config.history_length == 50
  with pytest.raises(configs.ConfigError, match="maps model names to their knobs"):
    configs.load(None, {"trainer.models": ["sasrec"], "trainer.model_args": {"epochs": 2}})
  with pytest.raises(configs.ConfigError, match=r"sasrec has no parameter\(s\) \['window'\]"):
    configs.load(None, {"trainer.models": ["sasrec"],
                        "trainer.model_args": {"sasrec": {"window": 2}}})
