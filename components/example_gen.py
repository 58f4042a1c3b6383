"""MovieLensExampleGen: MovieLens 100k files -> rating and catalogue tf.Examples.

``pipeline.pipeline`` puts the ``MovieLensExampleGen`` component first in the pipeline; its
executor only unpacks artifacts and calls :func:`write_movielens_examples`, which tests call
directly. Output follows TFX's layout, ``<uri>/Split-<name>/data_tfrecord-00000-of-00001.gz``
(GZIP TFRecord of serialized tf.train.Example), so stock TFX components can read it.
"""

import csv
import json
import os
from collections import Counter
from collections.abc import Iterator

import tensorflow as tf
from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples

from components import movielens, splits
from trainer import features

RATINGS_FILE = "u.data"
MOVIES_FILE = "u.item"
USERS_FILE = "u.user"
REJECTS_FILE = "rejects.csv"
SPLIT_FILE = "split.json"
SPLIT_PROPERTY = "split_config"
DATA_FILE = "data_tfrecord-00000-of-00001.gz"
RATING_SPLITS = (features.TRAIN_SPLIT, features.EVAL_SPLIT)


def split_path(uri: str, split: str) -> str:
    """Where one split's single TFRecord file lives inside an Examples artifact."""
    return os.path.join(uri, f"Split-{split}", DATA_FILE)


def _bytes(*values: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def _movie_features(movie: movielens.Movie) -> dict[str, tf.train.Feature]:
    return {
        features.MOVIE_ID: _bytes(movie.movie_id),
        features.MOVIE_TITLE: _bytes(movie.title),
        features.GENRES: _bytes(*movie.genres),
        features.RELEASE_YEAR: _int(movie.release_year),
    }


def catalogue_example(movie: movielens.Movie) -> tf.train.Example:
    """The catalogue example of one movie: the ``features.CATALOGUE_KEYS``."""
    return tf.train.Example(features=tf.train.Features(feature=_movie_features(movie)))


def rating_example(
    rating: movielens.Rating, movie: movielens.Movie, user: movielens.User
) -> tf.train.Example:
    """The rating example of one rating, joined with its movie and user."""
    feature = _movie_features(movie)
    feature.update(
        {
            features.USER_ID: _bytes(rating.user_id),
            features.RATING: _float(rating.rating),
            features.TIMESTAMP: _int(rating.timestamp),
            features.USER_AGE: _int(user.age),
            features.USER_GENDER: _bytes(user.gender),
            features.USER_OCCUPATION: _bytes(user.occupation),
        }
    )
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _writer(uri: str, split: str) -> tf.io.TFRecordWriter:
    path = split_path(uri, split)
    tf.io.gfile.makedirs(os.path.dirname(path))
    return tf.io.TFRecordWriter(path, options=tf.io.TFRecordOptions(compression_type="GZIP"))


def _input_file(data_dir: str, name: str) -> str:
    path = os.path.join(data_dir, name)
    if not os.path.isfile(path):
        raise ValueError(f"MovieLens file {path} is missing")
    return path


class _RejectLog:
    """Writes rejects to CSV as they come, and counts them by reason."""

    def __init__(self, path: str):
        self._file = tf.io.gfile.GFile(path, "w")
        self._csv = csv.writer(self._file, lineterminator="\n")
        self._csv.writerow(["file", "line", "reason", "raw"])
        self.counts = Counter({reason: 0 for reason in movielens.REJECT_REASONS})

    def add(self, reject: movielens.Reject) -> None:
        self._csv.writerow([reject.file, reject.line_number, reject.reason, reject.raw_line])
        self.counts[reject.reason] += 1

    def close(self) -> None:
        self._file.close()


def write_movielens_examples(
    data_dir: str, examples_uri: str, catalogue_uri: str, *, split: splits.SplitConfig
) -> dict:
    """Writes the rating examples (train/eval) and the catalogue examples.

    Every line of u.item, u.user and u.data either becomes an example or is listed in
    ``<examples_uri>/rejects.csv`` (columns file, line, reason, raw). A pair rated more than once
    keeps its latest rating. Each kept rating goes to the split ``split`` gives it; the split
    used is written to ``<examples_uri>/split.json`` (``splits.SplitPlan.to_dict``).

    u.data is read twice (``movielens.split_ratings``); the memory it needs grows with the
    number of kept ratings, see there.

    Args:
      data_dir: directory holding u.data, u.item and u.user in the ml-100k format.
      examples_uri: where the rating examples go (``Split-train``, ``Split-eval``).
      catalogue_uri: where the catalogue examples go (``Split-catalogue``), one per movie of
        u.item, rated or not.
      split: how ratings are assigned to train and eval.

    Returns:
      ``{"num_train": int, "num_eval": int, "num_catalogue": int,
      "rejects": {reason: int for every reason in movielens.REJECT_REASONS},
      "split": {"kind", "seed", "eval_fraction", "leave_last_n", "cutoff_timestamp"}}``, where
      ``cutoff_timestamp`` is an int for the time split and None otherwise.

    Raises:
      ValueError: naming the file, when one of the three is missing or has no valid line
        (the rejects written so far are in rejects.csv).
    """
    movies_path = _input_file(data_dir, MOVIES_FILE)
    users_path = _input_file(data_dir, USERS_FILE)
    ratings_path = _input_file(data_dir, RATINGS_FILE)
    tf.io.gfile.makedirs(examples_uri)
    rejects = _RejectLog(os.path.join(examples_uri, REJECTS_FILE))
    try:
        movies = _read_all(movielens.read_movies, movies_path, rejects, "movie")
        users = _read_all(movielens.read_users, users_path, rejects, "user")
        with _writer(catalogue_uri, features.CATALOGUE_SPLIT) as writer:
            for movie in movies.values():
                writer.write(catalogue_example(movie).SerializeToString(deterministic=True))
        plan, records = movielens.split_ratings(ratings_path, split, movies, users)
        counts = _write_ratings(records, plan, movies, users, examples_uri, rejects)
    finally:
        rejects.close()
    if not counts:
        raise ValueError(
            f"MovieLens file {ratings_path} has no valid rating "
            f"(see {os.path.join(examples_uri, REJECTS_FILE)})"
        )
    split_used = plan.to_dict()
    with tf.io.gfile.GFile(os.path.join(examples_uri, SPLIT_FILE), "w") as f:
        f.write(json.dumps(split_used, indent=2) + "\n")
    return {
        "num_train": counts[features.TRAIN_SPLIT],
        "num_eval": counts[features.EVAL_SPLIT],
        "num_catalogue": len(movies),
        "rejects": dict(rejects.counts),
        "split": split_used,
    }


def _read_all(read, path: str, rejects: _RejectLog, what: str) -> dict:
    """Reads u.item or u.user, logging its rejects; raises if nothing is valid."""
    file_rejects: list[movielens.Reject] = []
    records = read(path, file_rejects)
    for reject in file_rejects:
        rejects.add(reject)
    if not records:
        raise ValueError(f"MovieLens file {path} has no valid {what}")
    return records


def _write_ratings(
    records: Iterator[movielens.Rating | movielens.Reject],
    plan: splits.SplitPlan,
    movies: dict[str, movielens.Movie],
    users: dict[str, movielens.User],
    examples_uri: str,
    rejects: _RejectLog,
) -> Counter:
    """Streams u.data into the train/eval files; returns the number of examples per split."""
    counts = Counter()
    writers = {split: _writer(examples_uri, split) for split in RATING_SPLITS}
    try:
        for record in records:
            if isinstance(record, movielens.Reject):
                rejects.add(record)
                continue
            split = plan.split_of(record)
            example = rating_example(record, movies[record.movie_id], users[record.user_id])
            writers[split].write(example.SerializeToString(deterministic=True))
            counts[split] += 1
    finally:
        for writer in writers.values():
            writer.close()
    return counts


@component
def MovieLensExampleGen(
    data_dir: Parameter[str],
    examples: OutputArtifact[Examples],
    catalogue: OutputArtifact[Examples],
    seed: Parameter[int] = 42,
    eval_fraction: Parameter[float] = 0.2,
    split_kind: Parameter[str] = splits.SPLIT_RANDOM,
    leave_last_n: Parameter[int] = 1,
):
    """Reads ml-100k from ``data_dir`` into rating examples and catalogue examples.

    Args:
      data_dir: directory holding u.data, u.item and u.user.
      examples: rating examples, splits ``train`` and ``eval``; custom properties
        ``num_train``, ``num_eval``, ``num_rejects``, ``num_rejects_<reason>`` and
        ``split_config`` (JSON of the split used, as in ``<uri>/split.json``).
      catalogue: one example per movie, split ``catalogue``; custom property ``num_catalogue``.
      seed: seed of the random split.
      eval_fraction: expected share (random) or timestamp quantile (time) of the eval split.
      split_kind: ``"random"``, ``"time"`` or ``"leave_last_n"``; see ``splits.SplitConfig``.
      leave_last_n: ratings held out per user by the leave_last_n split.
    """
    split = splits.SplitConfig(
        kind=split_kind, seed=seed, eval_fraction=eval_fraction, leave_last_n=leave_last_n
    )
    stats = write_movielens_examples(data_dir, examples.uri, catalogue.uri, split=split)
    examples.split_names = artifact_utils.encode_split_names(list(RATING_SPLITS))
    catalogue.split_names = artifact_utils.encode_split_names([features.CATALOGUE_SPLIT])
    examples.set_int_custom_property("num_train", stats["num_train"])
    examples.set_int_custom_property("num_eval", stats["num_eval"])
    examples.set_int_custom_property("num_rejects", sum(stats["rejects"].values()))
    examples.set_string_custom_property(SPLIT_PROPERTY, json.dumps(stats["split"]))
    for reason, count in stats["rejects"].items():
        examples.set_int_custom_property(f"num_rejects_{reason}", count)
    catalogue.set_int_custom_property("num_catalogue", stats["num_catalogue"])
