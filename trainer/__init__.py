"""Model code: the models (models/), their configs (config.py) and registry
(registry.py), the metrics (metrics.py), Transform's preprocessing_fn, the Trainers'
run_fns (task.py, ranking_task.py) and the export of SavedModels with their warm-up
requests (export.py, warmup.py)."""
