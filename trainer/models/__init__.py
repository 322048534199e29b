"""Every model the project trains, in one place: the retrieval models (two_tower, mf,
lightgcn, sasrec, bert4rec, ncf, and the baselines popularity, itemknn, ease,
transitions), each a Recommender fitted on a Split (protocol.py), and the rankers
(rankers.py). The pipeline's Trainer and the leaderboard both use these; names and
classes are listed once, in trainer/registry.py."""
from recsys_tfx.env import require_legacy_keras

require_legacy_keras("recsys_tfx.trainer.models")
