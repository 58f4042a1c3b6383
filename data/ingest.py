"""The Beam half of ExampleGen: rating shards in, deduplicated, split tf.Example files out.

``data.examples.write_examples`` (the body of ``components.example_gen``'s component) calls
:func:`build_ingest` on the ``beam.Pipeline`` TFX hands that component (DirectRunner locally,
Dataflow in production, from the pipeline's Beam args)::

    shards -> ReadShard -> by user bucket -> GroupByKey -> Deduplicate -> WriteBucket
                  \\-> rejects ----------------------------------\\-> rejects.csv
                  \\-> counts --------------------------------------\\-> ingest_stats.json

Ratings travel in batches (:class:`Columns`, numpy arrays of a few thousand rows), never one
element per rating, so the runner's per-element cost is paid once per batch, and no stage
holds a whole file: ReadShard streams, and each bucket holds only its users' ratings. A user's
ratings all land in one bucket, which is what deduplication and the leave-last-n split need.
"""

import csv
import dataclasses
import io
import json
import os
import pickle
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence

import apache_beam as beam
import numpy as np
import pyarrow as pa
import tensorflow as tf
from tfx_bsl.coders import example_coder

from data import splits
from data.records import DUPLICATE, Movie, Rating, Reject, User, latest_per_pair
from data.sources.base import Shard, Source
from trainer import features

REJECTS_FILE = "rejects.csv"
STATS_FILE = "ingest_stats.json"
REJECTS_HEADER = ("file", "line", "reason", "raw")
RATING_SPLITS = (features.TRAIN_SPLIT, features.EVAL_SPLIT)
# Counted, never written aside: the configuration, not the input, drops these.
BELOW_IMPLICIT_THRESHOLD = "below_implicit_threshold"
ROWS_READ = "rows_read"
_BATCH_ROWS = 20_000
_REJECTS_TAG, _COUNTS_TAG = "rejects", "counts"


@dataclasses.dataclass
class Columns:
    """A batch of ratings as columns, each ``[n]``.

    Attributes:
      users, movies: object arrays of str ids.
      ratings: float32. timestamps: int64 Unix seconds.
      lines: int64 line numbers in their file. shards: int32 index of the shard read.
      raws: object array of the rows' original text.
    """

    users: np.ndarray
    movies: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    lines: np.ndarray
    shards: np.ndarray
    raws: np.ndarray

    @classmethod
    def from_ratings(cls, ratings: Sequence[Rating], shard: int) -> "Columns":
        n = len(ratings)
        return cls(
            users=np.array([r.user_id for r in ratings] or [], dtype=object),
            movies=np.array([r.movie_id for r in ratings] or [], dtype=object),
            ratings=np.fromiter((r.rating for r in ratings), np.float32, n),
            timestamps=np.fromiter((r.timestamp for r in ratings), np.int64, n),
            lines=np.fromiter((r.line_number for r in ratings), np.int64, n),
            shards=np.full(n, shard, np.int32),
            raws=np.array([r.raw_line for r in ratings] or [], dtype=object),
        )

    @classmethod
    def concat(cls, parts: Sequence["Columns"]) -> "Columns":
        return cls(
            *(np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(cls))
        )

    def take(self, index: np.ndarray) -> "Columns":
        return Columns(*(getattr(self, f.name)[index] for f in dataclasses.fields(self)))

    def __len__(self) -> int:
        return len(self.users)


def user_bucket(user_id: str, num_buckets: int) -> int:
    """The bucket of a user: the same in every process and run."""
    return zlib.crc32(user_id.encode()) % num_buckets


def pack_tables(movies: Mapping[str, Movie], users: Mapping[str, User] | None) -> bytes:
    """The movie and user tables as one pickle: a side input the DoFns unpack once.

    Beam serializes (dill + bz2) a DoFn every time it builds or ships a stage; DoFns holding
    50k Movie objects made that the largest cost of a run. A side input is encoded once.
    """
    return pickle.dumps((dict(movies), None if users is None else dict(users)), protocol=5)


class _TablesUser(beam.DoFn):
    """A DoFn that reads the movie and user tables from a side input, unpacked once."""

    _unpacked = None

    def tables(self, packed: bytes) -> tuple[dict, dict | None]:
        if self._unpacked is None:
            self._unpacked = pickle.loads(packed)
        return self._unpacked


class ReadShard(_TablesUser):
    """(shard index, Shard) -> (bucket, Columns) batches; Reject lists and Counters tagged."""

    def __init__(self, source: Source, num_buckets: int):
        self._source = source
        self._num_buckets = num_buckets

    def process(self, indexed, packed_tables):
        movies, users = self.tables(packed_tables)
        index, shard = indexed
        ratings: list[Rating] = []
        rejects: list[Reject] = []
        counts = Counter({ROWS_READ: 0})
        for record in self._source.read_ratings(shard, movies, users):
            counts[ROWS_READ] += 1
            if isinstance(record, Reject):
                counts[record.reason] += 1
                rejects.append(record)
                if len(rejects) >= _BATCH_ROWS:
                    yield beam.pvalue.TaggedOutput(_REJECTS_TAG, rejects)
                    rejects = []
                continue
            ratings.append(record)
            if len(ratings) >= _BATCH_ROWS:
                yield from self._by_bucket(ratings, index)
                ratings = []
        yield from self._by_bucket(ratings, index)
        if rejects:
            yield beam.pvalue.TaggedOutput(_REJECTS_TAG, rejects)
        yield beam.pvalue.TaggedOutput(_COUNTS_TAG, counts)

    def _by_bucket(self, ratings: list[Rating], shard: int) -> Iterator:
        if not ratings:
            return
        columns = Columns.from_ratings(ratings, shard)
        buckets = np.fromiter(
            (user_bucket(u, self._num_buckets) for u in columns.users), np.int32, len(columns)
        )
        for bucket in np.unique(buckets):
            yield int(bucket), columns.take(np.flatnonzero(buckets == bucket))


class Deduplicate(beam.DoFn):
    """(bucket, [Columns]) -> (bucket, Columns) with one rating per pair, by
    ``data.records.latest_per_pair`` (the latest; on equal timestamps the row read later).

    The other ratings of a pair become ``duplicate`` rejects. Ratings at or below
    ``implicit_threshold`` (when set) are then counted and dropped.
    """

    def __init__(self, shard_names: Sequence[str], implicit_threshold: float | None):
        self._shard_names = list(shard_names)
        self._threshold = implicit_threshold

    def process(self, element):
        bucket, parts = element
        columns = Columns.concat(list(parts))
        rows = zip(
            columns.users.tolist(),
            columns.movies.tolist(),
            columns.timestamps.tolist(),
            columns.shards.tolist(),
            columns.lines.tolist(),
            strict=True,
        )
        is_kept = np.zeros(len(columns), bool)
        is_kept[np.fromiter(latest_per_pair(rows).values(), np.int64)] = True
        duplicates = np.flatnonzero(~is_kept)
        if len(duplicates):
            yield beam.pvalue.TaggedOutput(
                _REJECTS_TAG, [self._duplicate(columns, int(i)) for i in duplicates]
            )
        kept = columns.take(np.flatnonzero(is_kept))
        counts = Counter({DUPLICATE: len(duplicates)})
        if self._threshold is not None:
            above = kept.ratings > self._threshold
            counts[BELOW_IMPLICIT_THRESHOLD] += int((~above).sum())
            kept = kept.take(np.flatnonzero(above))
        yield beam.pvalue.TaggedOutput(_COUNTS_TAG, counts)
        if len(kept):
            yield bucket, kept

    def _duplicate(self, columns: Columns, i: int) -> Reject:
        raw = columns.raws[i] or ",".join(
            str(v)
            for v in (
                columns.users[i],
                columns.movies[i],
                columns.ratings[i],
                columns.timestamps[i],
            )
        )
        return Reject(self._shard_names[columns.shards[i]], int(columns.lines[i]), DUPLICATE, raw)


def _merge_counters(counters: Iterable[Counter]) -> Counter:
    total = Counter()
    for counter in counters:
        total.update(counter)
    return total


class WriteBucket(_TablesUser):
    """(bucket, Columns) -> one GZIP TFRecord file per split; yields Counters of examples.

    Rows are sorted by (user id, movie id) so that two runs write identical bytes. Files are
    ``Split-<split>/data_tfrecord-<bucket>-of-<buckets>.gz``: rewriting a bucket (a retried
    bundle) replaces its file whole.
    """

    def __init__(self, examples_uri: str, split: splits.SplitConfig, num_buckets: int):
        self._uri = examples_uri
        self._split = split
        self._num_buckets = num_buckets

    def setup(self):
        self._encoder = example_coder.RecordBatchToExamplesEncoder()

    def process(self, element, cutoff, packed_tables):
        bucket, columns = element
        order = sorted(range(len(columns)), key=lambda i: (columns.users[i], columns.movies[i]))
        columns = columns.take(np.array(order, np.int64))
        plan = self._plan(columns, cutoff)
        is_eval = plan.eval_mask(columns.users, columns.movies, columns.timestamps)
        counts = Counter()
        for split, mask in ((features.TRAIN_SPLIT, ~is_eval), (features.EVAL_SPLIT, is_eval)):
            index = np.flatnonzero(mask)
            counts[split] = len(index)
            if len(index):
                self._write(split, bucket, columns.take(index), *self.tables(packed_tables))
        yield counts

    def _plan(self, columns: Columns, cutoff: int | None) -> splits.SplitPlan:
        """The split's plan for this bucket: the time cutoff is global (a side input); the
        leave-last-n pairs are planned here, as every rating of a user is in its bucket."""
        if self._split.kind == splits.SPLIT_LEAVE_LAST_N:
            rows = zip(columns.users, columns.movies, columns.timestamps.tolist(), strict=True)
            return splits.plan_split(self._split, rows)
        return splits.SplitPlan(self._split, cutoff_timestamp=cutoff)

    def _write(self, split: str, bucket: int, columns: Columns, movies, users) -> None:
        directory = os.path.join(self._uri, f"Split-{split}")
        tf.io.gfile.makedirs(directory)
        name = f"data_tfrecord-{bucket:05d}-of-{self._num_buckets:05d}.gz"
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(os.path.join(directory, name), options=options) as writer:
            for example in self._encoder.encode(rating_record_batch(columns, movies, users)):
                writer.write(example)


def _scalar(values: list, value_type: pa.DataType) -> pa.Array:
    """One value per row as the ``large_list`` column tfx_bsl's encoder takes."""
    offsets = pa.array(np.arange(len(values) + 1, dtype=np.int64))
    return pa.LargeListArray.from_arrays(offsets, pa.array(values, value_type))


def rating_record_batch(
    columns: Columns, movies: Mapping[str, Movie], users: Mapping[str, User] | None
) -> pa.RecordBatch:
    """The rating examples of a batch as an Arrow RecordBatch: every rating feature, joined
    with its movie and (when the source has users) its user. Unknown user fields are 0/""."""
    movie_rows = [movies[m] for m in columns.movies]
    genre_counts = np.fromiter((len(m.genres) for m in movie_rows), np.int64, len(movie_rows))
    genre_offsets = pa.array(np.concatenate([[0], np.cumsum(genre_counts)]).astype(np.int64))
    genres = [g.encode() for m in movie_rows for g in m.genres]
    user_rows = [users.get(u) if users else None for u in columns.users]
    binary = pa.large_binary()
    arrays = {
        features.USER_ID: _scalar([u.encode() for u in columns.users], binary),
        features.MOVIE_ID: _scalar([m.encode() for m in columns.movies], binary),
        features.MOVIE_TITLE: _scalar([m.title.encode() for m in movie_rows], binary),
        features.RATING: _scalar(columns.ratings, pa.float32()),
        features.TIMESTAMP: _scalar(columns.timestamps, pa.int64()),
        features.GENRES: pa.LargeListArray.from_arrays(genre_offsets, pa.array(genres, binary)),
        features.RELEASE_YEAR: _scalar([m.release_year for m in movie_rows], pa.int64()),
        features.USER_AGE: _scalar([u.age if u else 0 for u in user_rows], pa.int64()),
        features.USER_GENDER: _scalar(
            [(u.gender if u else "").encode() for u in user_rows], binary
        ),
    }
    return pa.RecordBatch.from_arrays(list(arrays.values()), list(arrays))


def write_rejects(batches: Iterable[list[Reject]], path: str, file_order: Sequence[str]) -> None:
    """Writes every reject to ``path`` as CSV (file, line, reason, raw), in file then line
    order, so two runs write the same bytes."""
    rank = {name: i for i, name in enumerate(file_order)}
    rejects = sorted(
        (r for batch in batches for r in batch),
        key=lambda r: (rank.get(r.file, len(rank)), r.file, r.line_number),
    )
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(REJECTS_HEADER)
    for r in rejects:
        writer.writerow([r.file, r.line_number, r.reason, r.raw_line])
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(buffer.getvalue())


def _write_stats(path: str, counts: Counter, cutoff: int | None) -> None:
    with tf.io.gfile.GFile(path, "w") as f:
        f.write(json.dumps({"counts": dict(counts), "cutoff_timestamp": cutoff}, sort_keys=True))


def build_ingest(
    p: beam.Pipeline,
    source: Source,
    shards: Sequence[Shard],
    movies: Mapping[str, Movie],
    users: Mapping[str, User] | None,
    catalogue_rejects: Sequence[Reject],
    examples_uri: str,
    split: splits.SplitConfig,
    implicit_threshold: float | None,
    num_buckets: int,
) -> None:
    """Adds the ingestion to ``p``; running ``p`` writes the splits, rejects and stats.

    Args:
      p: the pipeline.
      source: where the ratings come from; shards: its ``rating_shards()``.
      movies, users: the catalogue and user table, read beforehand (small).
      catalogue_rejects: rejects of the movie and user files, listed in rejects.csv first.
      examples_uri: the Examples artifact: ``Split-train``, ``Split-eval``,
        ``rejects.csv`` and ``ingest_stats.json`` (counts; the time split's cutoff) go here.
      split: train/eval assignment.
      implicit_threshold: keep only ratings above it; None keeps all.
      num_buckets: user buckets; each writes at most one file per split.
    """
    tables = beam.pvalue.AsSingleton(
        p | "Tables" >> beam.Create([pack_tables(movies, users)], reshuffle=False)
    )
    read = (
        p
        | "Shards" >> beam.Create(list(enumerate(shards)))
        | "Reshuffle shards" >> beam.Reshuffle()
        | "Read"
        >> beam.ParDo(ReadShard(source, num_buckets), tables).with_outputs(
            _REJECTS_TAG, _COUNTS_TAG, main="ratings"
        )
    )
    deduped = (
        read.ratings
        | "By bucket" >> beam.GroupByKey()
        | "Deduplicate"
        >> beam.ParDo(Deduplicate([s.name for s in shards], implicit_threshold)).with_outputs(
            _REJECTS_TAG, _COUNTS_TAG, main="kept"
        )
    )
    if split.kind == splits.SPLIT_TIME:
        cutoff = (
            deduped.kept
            | "Timestamps" >> beam.Map(lambda kv: Counter(kv[1].timestamps.tolist()))
            | "Count timestamps" >> beam.CombineGlobally(_merge_counters)
            | "Cutoff" >> beam.Map(splits.time_cutoff, split.eval_fraction)
        )
    else:
        cutoff = p | "No cutoff" >> beam.Create([None])
    cutoff_value = beam.pvalue.AsSingleton(cutoff)
    written = deduped.kept | "Write" >> beam.ParDo(
        WriteBucket(examples_uri, split, num_buckets), cutoff_value, tables
    )
    rejects_path = os.path.join(examples_uri, REJECTS_FILE)
    file_order = [r.file for r in catalogue_rejects] + [s.name for s in shards]
    (
        (
            p | "Catalogue rejects" >> beam.Create([list(catalogue_rejects)]),
            read.rejects,
            deduped.rejects,
        )
        | "All rejects" >> beam.Flatten()
        | "Collect rejects" >> beam.combiners.ToList()
        | "Write rejects"
        >> beam.Map(lambda batches, path: write_rejects(batches, path, file_order), rejects_path)
    )
    (
        (read.counts, deduped.counts, written)
        | "All counts" >> beam.Flatten()
        | "Sum counts" >> beam.CombineGlobally(_merge_counters)
        | "Write stats"
        >> beam.Map(
            lambda counts, cut, path: _write_stats(path, counts, cut),
            cutoff_value,
            os.path.join(examples_uri, STATS_FILE),
        )
    )


def read_stats(examples_uri: str) -> dict:
    """``{"counts": {...}, "cutoff_timestamp": int | None}`` as the pipeline wrote them."""
    with tf.io.gfile.GFile(os.path.join(examples_uri, STATS_FILE)) as f:
        return json.load(f)
