"""recsys-tfx: a deep-learning recommender on TFX, end to end.

One import root for the whole project, so that no generic package name (`pipeline`,
`serving`, `kubeflow`, ...) lands in site-packages. The repository keeps one top-level
folder per layer; pyproject.toml maps each to a sub-package of this one, and this folder
(cli/, the top layer) to the root package itself:

    cli/          recsys_tfx.cli (the `recsys` command), recsys_tfx.env (the process
                  environment TensorFlow needs)
    kubeflow/     recsys_tfx.kubeflow: compile + schedule on Kubeflow Pipelines
    pipeline/     recsys_tfx.pipeline: create_pipeline, configs, runner, reports
    leaderboard/  recsys_tfx.leaderboard: `recsys benchmark`, models scored on one split
    components/   recsys_tfx.components: custom TFX components
    trainer/      recsys_tfx.trainer: models, their configs and registry, export
    schema/       recsys_tfx.schema: schemas, feature roles, canonical data, time split,
                  the export contract
    serving/      recsys_tfx.serving: the TF-Serving-compatible server and client

Imports point down that list only; serving reads schema alone. tests/test_layers.py
enforces both.
"""
