"""Every feature key and vocabulary name of movierec, in one place.

Imported by ExampleGen (raw keys it writes), the Transform preprocessing_fn, the Trainer,
the Evaluator and the serving exporters. Nothing else spells these strings.
"""

# Raw features written by ExampleGen into the rating examples.
# user_id, movie_id (bytes, the dataset's ids as strings) are also the request keys of the
# served models, so they are the serving contract's (``serving.names``).
from serving.names import MOVIE_ID, USER_ID  # noqa: E402,F401

MOVIE_TITLE = "movie_title"  # bytes
RATING = "rating"  # float, the label of the ranking task
TIMESTAMP = "timestamp"  # int64, Unix seconds
GENRES = "genres"  # bytes list, possibly empty
RELEASE_YEAR = "release_year"  # int64, 0 when unknown
USER_AGE = "user_age"  # int64, 0 when unknown
USER_GENDER = "user_gender"  # bytes, "" when unknown

# Keys of the catalogue examples (one per movie, rated or not).
CATALOGUE_KEYS = (MOVIE_ID, MOVIE_TITLE, GENRES, RELEASE_YEAR)

# Transformed features produced by preprocessing_fn.
USER_IDX = "user_idx"  # int64 index into the user vocabulary, OOV = vocab size
MOVIE_IDX = "movie_idx"  # int64 index into the movie vocabulary, OOV = vocab size
GENRE_IDX = "genre_idx"  # varlen int64 indices into the genre vocabulary

# tf.Transform vocabulary names (files under the transform output's assets).
USER_VOCAB = "user_id"
MOVIE_VOCAB = "movie_id"
GENRE_VOCAB = "genres"

# Every vocabulary has exactly this many out-of-vocabulary buckets, placed after the
# vocabulary, so an unknown id maps to index == vocabulary size.
NUM_OOV_BUCKETS = 1

# Split names of the ExampleGen outputs.
TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
CATALOGUE_SPLIT = "catalogue"

# The signature names and request keys of the served models are the serving contract's.
from serving.names import (  # noqa: E402,F401  (re-exported for the trainer's modules)
    EXAMPLES_INPUT,
    SIG_EXAMPLES,
    SIG_HISTORY_EMBEDDING,
    SIG_MOVIE_EMBEDDING,
    SIG_RATING,
    SIG_RERANK,
    SIG_SEEN,
    SIG_USER_EMBEDDING,
)
