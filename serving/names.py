"""Names shared by what builds servable models and what serves them.

The servable builder (``serving.retrieval``, ``components.servables``), the Pusher, the
server and the Evaluator all import these; nothing else spells them.
"""

from trainer.features import SIG_HISTORY_EMBEDDING, SIG_RERANK, SIG_SEEN  # noqa: F401

# The models of a serving directory: <serving_dir>/<name>/<version>/. The two retrieval
# models share one signature: ScaNN (needs a TF Serving build with the ScaNN ops) and brute
# force (stock ops only).
RETRIEVAL = "retrieval"
RETRIEVAL_BRUTE_FORCE = "retrieval_brute_force"
RANKING = "ranking"
MODEL_NAMES = (RETRIEVAL, RETRIEVAL_BRUTE_FORCE, RANKING)

# Signatures of the retrieval models beside serving_default (top-k unseen).
SIG_INCLUDING_SEEN = "recommend_including_seen"  # user_id -> top-k, rated movies allowed
SIG_FROM_HISTORY = "recommend_from_history"  # movie ids a user likes -> top-k of the rest
# Attributes of the retrieval module holding [num_movies] catalogue tensors, aligned.
CATALOGUE_IDS = "catalogue_movie_ids"  # string
CATALOGUE_TITLES = "catalogue_titles"  # string
CATALOGUE_NUM_RATINGS = "catalogue_num_ratings"  # int64, train ratings of each movie
CATALOGUE_VARIABLES = (CATALOGUE_IDS, CATALOGUE_TITLES, CATALOGUE_NUM_RATINGS)
