"""The contract between what builds servable models and what serves them: names and layout.

Both sides import this module and nothing else of each other: the exporter (``trainer.export``,
``publish``) writes models under these names and signatures into this layout, and the
runtime (``serving``) reads them back. It imports nothing, so ``serving`` deploys without the
training stack. The layout of a serving directory is TF Serving's own::

    <serving_dir>/models.config
    <serving_dir>/<model_name>/<version>/saved_model.pb   (versions are increasing integers)
"""

import os
import re
from pathlib import Path

# The models of a serving directory. The two retrieval models share one signature: ScaNN
# (needs a TF Serving build with the ScaNN ops) and brute force (stock ops only).
RETRIEVAL = "retrieval"
RETRIEVAL_BRUTE_FORCE = "retrieval_brute_force"
RANKING = "ranking"
MODEL_NAMES = (RETRIEVAL, RETRIEVAL_BRUTE_FORCE, RANKING)

# Request keys: the raw id features every signature takes.
USER_ID = "user_id"  # string, the dataset's user id
MOVIE_ID = "movie_id"  # string, the dataset's movie id

# Signatures of the trained (ranking) model, the Trainer's output.
SIG_RATING = "serving_default"  # user_id, movie_id -> rating
SIG_USER_EMBEDDING = "user_embedding"  # user_id -> embedding
SIG_MOVIE_EMBEDDING = "movie_embedding"  # movie_id -> embedding
SIG_HISTORY_EMBEDDING = "history_embedding"  # movie ids [batch, n] -> embedding
SIG_RERANK = "rerank"  # user id, candidates, retrieval scores -> the served order's scores
SIG_SEEN = "seen_movies"  # user id -> the movies of the user's history
# Every served model also answers on serialized tf.Examples (TF Serving's classify/regress
# style clients): a [batch] string tensor of tf.Example protos holding the raw id features.
SIG_EXAMPLES = "serving_examples"
EXAMPLES_INPUT = "examples"

# Signatures of the retrieval models beside serving_default (top-k unseen).
SIG_INCLUDING_SEEN = "recommend_including_seen"  # user_id -> top-k, rated movies allowed
SIG_FROM_HISTORY = "recommend_from_history"  # movie ids a user likes -> top-k of the rest
# Attributes of the retrieval module holding [num_movies] catalogue tensors, aligned.
CATALOGUE_IDS = "catalogue_movie_ids"  # string
CATALOGUE_TITLES = "catalogue_titles"  # string
CATALOGUE_NUM_RATINGS = "catalogue_num_ratings"  # int64, train ratings of each movie
CATALOGUE_VARIABLES = (CATALOGUE_IDS, CATALOGUE_TITLES, CATALOGUE_NUM_RATINGS)

# Candidates a retrieval model returns per user unless configured (the re-ranker's pool).
DEFAULT_RETRIEVAL_K = 100

# Top-k indexes a retrieval model can hold (``publish.index`` builds them).
INDEX_BRUTE_FORCE = "brute_force"  # exact, stock TensorFlow ops
INDEX_SCANN = "scann"  # approximate, needs ScaNN's ops (``serving.loading``)
INDEX_KINDS = (INDEX_BRUTE_FORCE, INDEX_SCANN)

# Layout of a serving directory.
MODELS_CONFIG = "models.config"
# TF Serving only loads all-digit directory names, so names with this prefix are never served.
TMP_PREFIX = ".tmp-"
SAVED_MODEL_FILES = ("saved_model.pb", "saved_model.pbtxt")
_VERSION = re.compile(r"[0-9]+")


def list_versions(model_base: str | os.PathLike) -> list[int]:
    """The versions under one model's base path, ascending.

    Args:
      model_base: ``<serving_dir>/<model_name>``; it need not exist.

    Returns:
      The integer names of the all-digit subdirectories (temporary and other directories
      are not versions); ``[]`` when there are none.
    """
    model_base = Path(model_base)
    if not model_base.is_dir():
        return []
    return sorted(
        int(entry.name)
        for entry in model_base.iterdir()
        if _VERSION.fullmatch(entry.name) and entry.is_dir()
    )
