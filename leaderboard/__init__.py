"""`recsys benchmark`: the models of trainer/models/ fitted on one time-ordered split and
scored the same way, one leaderboard. A consumer of the trainer: it defines no model."""
