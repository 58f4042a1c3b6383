"""MovieRecExampleGen: any dataset source -> rating and catalogue tf.Examples.

``pipeline.pipeline`` puts the ``MovieRecExampleGen`` component first in the pipeline; it
unpacks its artifacts and calls :func:`write_examples`, which tests call directly. The ratings
stream through Beam (``components.ingest``) on the pipeline's Beam runner. Output follows
TFX's layout, ``<uri>/Split-<name>/*.gz`` (GZIP TFRecords of serialized tf.train.Example), so
stock TFX components (StatisticsGen, Transform) read it.
"""

import json
import os
from collections import Counter

import apache_beam as beam
import tensorflow as tf
from tfx.dsl.component.experimental.annotations import (
    BeamComponentParameter,
    OutputArtifact,
    Parameter,
)
from tfx.dsl.component.experimental.decorators import component
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import Examples

from components import ingest, movielens, splits
from components.sources import DatasetSpec, Source, make_source
from trainer import features

REJECTS_FILE = ingest.REJECTS_FILE
SPLIT_FILE = "split.json"
SPLIT_PROPERTY = "split_config"
DATASET_PROPERTY = "dataset"
CATALOGUE_FILE = "data_tfrecord-00000-of-00001.gz"
RATING_SPLITS = ingest.RATING_SPLITS
DEFAULT_BUCKETS = 8


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


def _write_catalogue(catalogue_uri: str, movies: dict[str, movielens.Movie]) -> None:
    path = os.path.join(catalogue_uri, f"Split-{features.CATALOGUE_SPLIT}", CATALOGUE_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    options = tf.io.TFRecordOptions(compression_type="GZIP")
    with tf.io.TFRecordWriter(path, options=options) as writer:
        for movie in movies.values():
            writer.write(catalogue_example(movie).SerializeToString(deterministic=True))


def _read_table(read, rejects: list[movielens.Reject]):
    """Reads the movie or user table, collecting its rejects."""
    file_rejects: list[movielens.Reject] = []
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
    counted. A pair rated more than once keeps its latest rating. The split used is written to
    ``<examples_uri>/split.json`` (``splits.SplitPlan.to_dict``).

    The movie and user tables are read here; the ratings stream through a Beam pipeline
    (``components.ingest``), so memory does not grow with the size of the ratings files
    beyond what one user bucket holds.

    Args:
      source: the dataset (``components.sources.make_source``).
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
      "rejects": {reason: int for every reason in movielens.REJECT_REASONS},
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
    catalogue_rejects: list[movielens.Reject] = []
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
    reject_counts = Counter({reason: 0 for reason in movielens.REJECT_REASONS})
    for reject in catalogue_rejects:
        reject_counts[reject.reason] += 1
    for reason in movielens.REJECT_REASONS:
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


def write_movielens_examples(
    data_dir: str, examples_uri: str, catalogue_uri: str, *, split: splits.SplitConfig
) -> dict:
    """:func:`write_examples` of the MovieLens 100k files (u.data, u.item, u.user) in
    ``data_dir``."""
    source = make_source(DatasetSpec(kind="ml-100k", path=data_dir))
    return write_examples(source, examples_uri, catalogue_uri, split=split)


@component(use_beam=True)
def MovieRecExampleGen(
    dataset: Parameter[str],
    examples: OutputArtifact[Examples],
    catalogue: OutputArtifact[Examples],
    seed: Parameter[int] = 42,
    eval_fraction: Parameter[float] = 0.2,
    split_kind: Parameter[str] = splits.SPLIT_RANDOM,
    leave_last_n: Parameter[int] = 1,
    beam_pipeline: BeamComponentParameter[beam.Pipeline] = None,
):
    """Reads a dataset into rating examples and catalogue examples.

    Args:
      dataset: ``DatasetSpec.to_json()`` of the source (kind, path, options).
      examples: rating examples, splits ``train`` and ``eval``; custom properties
        ``num_train``, ``num_eval``, ``num_rows`` (rating rows read),
        ``num_below_implicit_threshold``, ``num_rejects``, ``num_rejects_<reason>``,
        ``split_config`` (JSON of the split used, as in ``<uri>/split.json``) and ``dataset``.
      catalogue: one example per movie, split ``catalogue``; custom property ``num_catalogue``.
      seed: seed of the random split.
      eval_fraction: expected share (random) or timestamp quantile (time) of the eval split.
      split_kind: ``"random"``, ``"time"`` or ``"leave_last_n"``; see ``splits.SplitConfig``.
      leave_last_n: ratings held out per user by the leave_last_n split.
      beam_pipeline: supplied by TFX from the pipeline's Beam args.
    """
    spec = DatasetSpec.from_json(dataset)
    split = splits.SplitConfig(
        kind=split_kind, seed=seed, eval_fraction=eval_fraction, leave_last_n=leave_last_n
    )
    stats = write_examples(
        make_source(spec),
        examples.uri,
        catalogue.uri,
        split=split,
        implicit_threshold=spec.implicit_threshold,
        beam_pipeline=beam_pipeline,
    )
    examples.split_names = artifact_utils.encode_split_names(list(RATING_SPLITS))
    catalogue.split_names = artifact_utils.encode_split_names([features.CATALOGUE_SPLIT])
    for key in ("num_train", "num_eval", "num_rows", "num_below_implicit_threshold"):
        examples.set_int_custom_property(key, stats[key])
    examples.set_int_custom_property("num_rejects", sum(stats["rejects"].values()))
    examples.set_string_custom_property(SPLIT_PROPERTY, json.dumps(stats["split"]))
    examples.set_string_custom_property(DATASET_PROPERTY, json.dumps(stats["dataset"]))
    for reason, count in stats["rejects"].items():
        examples.set_int_custom_property(f"num_rejects_{reason}", count)
    catalogue.set_int_custom_property("num_catalogue", stats["num_catalogue"])
