"""What an exported model promises the server and its clients: model names, signature
names, input and output names, the "unknown" values, asset names and the warm-up file.

The exporter (trainer/export.py, trainer/warmup.py) writes SavedModels that keep these
promises; the server and the client (serving/) rely on nothing else of how a model was
made. Plain constants: no TensorFlow, so the serving layer can read them without the
trainer.
"""

# Model names under the serving directory: <serving_dir>/<model>/<version>/.
RETRIEVAL_MODEL = "retrieval"
RANKING_MODEL = "ranking"
RECOMMENDER_MODEL = "recommender"  # the whole funnel in one graph (trainer/funnel_export.py)

# Signatures of the retrieval SavedModel.
DEFAULT_SIGNATURE = "serving_default"  # user_id -> item_ids, scores
RECOMMEND_WITH_CONTEXT = "recommend_with_context"  # user_id, <context> -> item_ids, scores
RECOMMEND_WITH_HISTORY = "recommend_with_history"  # history, <context> -> item_ids, scores
QUERY_EMBEDDING = "query_embedding"  # user_id, <context> -> embedding
HISTORY_EMBEDDING = "history_embedding"  # history, <context> -> embedding
ITEM_EMBEDDINGS = "item_embeddings"  # () -> item_ids, embeddings
EVALUATE_EXAMPLES = "evaluate_examples"  # examples -> ranks [batch, 2] (TFMA)
# The candidate lists the ranker re-orders: the union of every source's (retrieval
# model's) top-K, by the primary source's score, with each source's score and rank.
CANDIDATES_WITH_CONTEXT = "candidates_with_context"  # user_id, <context> -> candidates
CANDIDATES_WITH_HISTORY = "candidates_with_history"  # history, <context> -> candidates
CANDIDATE_SOURCES = "candidate_sources"  # () -> sources [S], primary (scalar)
# Signatures of the ranking SavedModel.
RANKING_SIGNATURE = DEFAULT_SIGNATURE  # user_id, item_id, source_scores, source_ranks,
#                                         <context> -> scores
SCORE_EXAMPLES = "score_examples"  # examples -> scores (TFMA)
# The ranker's CANDIDATE_SOURCES signature names the sources it was trained with; the
# funnel uses it only with a retrieval model of the same sources.
# Signatures of the recommender SavedModel (the whole funnel, one Predict):
#   serving_default(user_id, <context>)                      top DEFAULT_K, default rules
#   recommend(user_id, <context>, <knobs>)                   the rules' knobs as inputs
#   recommend_with_history(user_id, history, <context>, <knobs>)  retrieval by history
#   composition()                 which retrieval and ranking versions it composes
RECOMMEND = "recommend"
COMPOSITION = "composition"
# The knobs: k (int32), max_per_genre (int32, 0 = no cap), fresh_boost (float32, 0 = off),
# boost_mode (string, "add" | "multiply"); scalars. TF 2.16 saves no default values for
# signature inputs, so serving_default fixes them at DEFAULT_K, DEFAULT_MAX_PER_GENRE, 0.
RECOMMENDER_KNOBS = ("k", "max_per_genre", "fresh_boost", "boost_mode")
DEFAULT_K = 10
DEFAULT_MAX_PER_GENRE = 3
# Its outputs [batch, k]: ITEM_IDS ("" past the end), these scores and 1-based retrieval
# ranks; and [batch] counts of what each rule did over all the candidates.
RETRIEVAL_SCORES, RANKING_SCORES, FINAL_SCORES = (
    "retrieval_scores", "ranking_scores", "final_scores")  # ranking: NaN when off
RETRIEVAL_RANKS = "retrieval_ranks"
RULE_COUNTS = {"retrieved": "retrieved", "seen": "seen_dropped",
               "fresh_boost": "fresh_boosted", "genre_cap": "genre_capped"}
# composition()'s outputs, also written as JSON (COMPOSITION_FILE): retrieval_version,
# ranking_version (-1: none served), ranking_live (0/1), ranking (why, in words).
COMPOSITION_FILE = "assets.extra/composition.json"

# Input names; every other input of a signature is a context feature (e.g. hour, device).
USER_ID = "user_id"
ITEM_ID = "item_id"
HISTORY = "history"  # string [batch, length], item ids oldest first, "" as padding
EXAMPLES = "examples"  # serialized tf.Example [batch]
ID_INPUTS = (USER_ID, ITEM_ID, HISTORY)

# Output names.
ITEM_IDS = "item_ids"
SCORES = "scores"
EMBEDDING = "embedding"
EMBEDDINGS = "embeddings"
RANKS = "ranks"
SOURCES = "sources"
PRIMARY = "primary"
# [candidates, sources] float32, as a ranking input and a candidates_* output: each
# source's score of the candidate, and its 1-based rank in that source's top-K (0: the
# source did not retrieve it).
SOURCE_SCORES = "source_scores"
SOURCE_RANKS = "source_ranks"

# Context a request does not know: integers -1, strings "" (the models were trained with
# context masked to these values, so they are meaningful inputs, not errors).
UNKNOWN_INT = -1
UNKNOWN_STRING = ""

# TF Serving replays the PredictionLog records (predict_log only) in this file before a
# version serves, at most MAX_WARMUP_RECORDS of them.
WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000
# How the retrieval model's primary source was chosen: each candidate model's eval-split
# figures (JSON), written beside the SavedModel.
SELECTION_FILE = "assets.extra/selection.json"
