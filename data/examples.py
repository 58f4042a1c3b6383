"""ExampleGen's body: any dataset source -> rating and catalogue tf.Examples.

``components.example_gen``'s ``MovieRecExampleGen`` component calls :func:`write_examples`
(as do tests and ``bench.ingest``). The ratings stream through Beam (``data.ingest``) on the
pipeline's Beam runner. Output follows TFX's layout, ``<uri>/Split-<name>/*.gz`` (GZIP
TFRecords of serialized tf.train.Example), so stock TFX components (StatisticsGen, Transform)
read it.
"""

import json
import os
from collections import Counter

import apache_beam as beam
import tensorflow as tf

from data import ingest, records, splits
from data.sources import Source
from trainer import features

SPLIT_FILE = "split.json"
CATALOGUE_FILE = "data_tfrecord-00000-of-00001.gz"
DEFAULT_BUCKETS = 8


def _bytes(*values: str) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in values]))


def _int(value: int) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))


def _float(value: float) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[value]))


def _movie_features(movie: records.Movie) -> dict[str, tf.train.Feature]:
    return {
        features.MOVIE_ID: _bytes(movie.movie_id),
        features.MOVIE_TITLE: _bytes(movie.title),
        features.GENRES: _bytes(*movie.genres),
        features.RELEASE_YEAR: _int(movie.release_year),
    }


def catalogue_example(movie: records.Movie) -> tf.train.Example:
    """The catalogue example of one movie: the ``features.CATALOGUE_KEYS``."""
    return tf.train.Example(features=tf.train.Features(feature=_movie_features(movie)))


def _write_catalogue(catalogue_uri: str, movies: dict[str, records.Movie]) -> None:
    path = os.path.join(catalogue_uri, f"Split-{features.CATALOGUE_SPLIT}", CATALOGUE_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(path, options=options) as writer:
        for movie in movies.values():
            writer.write(catalogue_example(movie).SerializeToString(deterministic=True))


def _read_table(read, rejects: list[records.Reject]):
    """Reads the movie or user table, collecting its rejects."""
    file_rejects: list[records.Reject] = []
    table = read(file_rejects)
    rejects.extend(file_rejects)
    return table


def write_examples(
    source: Source,
    examples_uri: str,
    catalogue_uri: str,
    *,
    split: splits.SplitConfig,
    implicit_threshold: float | None = None,
    num_buckets: int = DEFAULT_BUCKETS,
    beam_pipeline: beam.Pipeline | None = None,
) -> dict:
    """Writes the rating examples (train/eval) and the catalogue examples of one source.

    Every input row either becomes an example or is listed in ``<examples_uri>/rejects.csv``
    (columns file, line, reason, raw); ratings at or below ``implicit_threshold`` are only
    counted. A pair rated more than once keeps one rating, by ``records.latest_per_pair`` (its
    latest; on equal timestamps the row read later). The split used is written to
    ``<examples_uri>/split.json`` (``splits.SplitPlan.to_dict``).

    The movie and user tables are read here; the ratings stream through a Beam pipeline
    (``data.ingest``), so memory does not grow with the size of the ratings files
    beyond what one user bucket holds.

    Args:
      source: the dataset (``data.sources.make_source``).
      examples_uri: where the rating examples go (``Split-train``, ``Split-eval``).
      catalogue_uri: where the catalogue examples go (``Split-catalogue``), one per movie of
        the catalogue, rated or not.
      split: how ratings are assigned to train and eval.
      implicit_threshold: keep only ratings above this value (implicit feedback); None keeps
        every rating.
      num_buckets: user buckets of the ingestion; at most one file per bucket and split.
      beam_pipeline: the pipeline to run in (TFX passes one configured from the pipeline's
        Beam args); None runs a local DirectRunner pipeline.

    Returns:
      ``{"num_train": int, "num_eval": int, "num_catalogue": int, "num_rows": int,
      "num_below_implicit_threshold": int,
      "rejects": {reason: int for every reason in records.REJECT_REASONS},
      "split": {"kind", "seed", "eval_fraction", "leave_last_n", "cutoff_timestamp"},
      "dataset": source.describe()}``.

    Raises:
      ValueError: naming the file (and column), when an input is missing, lacks a required
        column or has no valid row (the rejects found are in rejects.csv), or when the split
        needs timestamps the source does not have.
    """
    if split.kind != splits.SPLIT_RANDOM and not source.has_timestamps:
        raise ValueError(
            f"the {split.kind} split needs rating timestamps, which dataset {source.name} does "
            f"not have; use the random split"
        )
    tf.io.gfile.makedirs(examples_uri)
    catalogue_rejects: list[records.Reject] = []
    movies = _read_table(source.read_movies, catalogue_rejects)
    users = _read_table(source.read_users, catalogue_rejects)
    _write_catalogue(catalogue_uri, movies)
    shards = source.rating_shards()
    pipeline = beam_pipeline if beam_pipeline is not None else beam.Pipeline()
    with pipeline as p:
        ingest.build_ingest(
            p,
            source,
            shards,
            movies,
            users,
            catalogue_rejects,
            examples_uri,
            split,
            implicit_threshold,
            num_buckets,
        )
    stats = ingest.read_stats(examples_uri)
    counts = stats["counts"]
    rejects_path = os.path.join(examples_uri, ingest.REJECTS_FILE)
    if not counts.get(features.TRAIN_SPLIT, 0) + counts.get(features.EVAL_SPLIT, 0):
        names = ", ".join(s.name for s in shards)
        raise ValueError(
            f"{source.name} ratings ({names}) have no valid rating (see {rejects_path})"
        )
    for name in ingest.RATING_SPLITS:  # an empty split still has its directory
        tf.io.gfile.makedirs(os.path.join(examples_uri, f"Split-{name}"))
    reject_counts = Counter({reason: 0 for reason in records.REJECT_REASONS})
    for reject in catalogue_rejects:
        reject_counts[reject.reason] += 1
    for reason in records.REJECT_REASONS:
        reject_counts[reason] += counts.get(reason, 0)
    plan = splits.SplitPlan(split, cutoff_timestamp=stats["cutoff_timestamp"])
    split_used = plan.to_dict()
    with tf.io.gfile.GFile(os.path.join(examples_uri, SPLIT_FILE), "w") as f:
        f.write(json.dumps(split_used, indent=2) + "\n")
    return {
        "num_train": counts.get(features.TRAIN_SPLIT, 0),
        "num_eval": counts.get(features.EVAL_SPLIT, 0),
        "num_catalogue": len(movies),
        "num_rows": counts.get(ingest.ROWS_READ, 0),
        "num_below_implicit_threshold": counts.get(ingest.BELOW_IMPLICIT_THRESHOLD, 0),
        "rejects": dict(reject_counts),
        "split": split_used,
        "dataset": source.describe(),
    }
