"""`recsys benchmark`: many retrieval models, one time-ordered split, one leaderboard."""
