"""Every feature key, vocabulary name and label of movierec, in one place.

Imported by ExampleGen (raw keys it writes), the Transform preprocessing_fn, the Trainer,
the Evaluator and the serving exporters. Nothing else spells these strings.
"""

# Raw features written by ExampleGen into the rating examples.
USER_ID = "user_id"  # bytes, the dataset's user id as a string
MOVIE_ID = "movie_id"  # bytes, the dataset's movie id as a string
MOVIE_TITLE = "movie_title"  # bytes
RATING = "rating"  # float, the label of the ranking task
TIMESTAMP = "timestamp"  # int64, Unix seconds
GENRES = "genres"  # bytes list, possibly empty
RELEASE_YEAR = "release_year"  # int64, 0 when unknown
USER_AGE = "user_age"  # int64, 0 when unknown
USER_GENDER = "user_gender"  # bytes, "" when unknown
USER_OCCUPATION = "user_occupation"  # bytes, "" when unknown

LABEL = RATING

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

# Signatures of the trained model (Trainer output) that the Evaluator and Pusher call.
SIG_RATING = "serving_default"  # user_id, movie_id -> rating
SIG_USER_EMBEDDING = "user_embedding"  # user_id -> embedding
SIG_MOVIE_EMBEDDING = "movie_embedding"  # movie_id -> embedding
# Every served model also answers on serialized tf.Examples (TF Serving's classify/regress
# style clients): a [batch] string tensor of tf.Example protos holding the raw id features.
SIG_EXAMPLES = "serving_examples"
EXAMPLES_INPUT = "examples"
SIG_HISTORY_EMBEDDING = "history_embedding"  # movie ids [batch, n] -> embedding
SIG_RERANK = "rerank"  # user id, candidates, retrieval scores -> the served order's scores
SIG_SEEN = "seen_movies"  # user id -> the movies of the user's history
