"""Tests of ExampleGen: its body ``data.examples.write_examples`` on tiny files and on real
ml-100k, and the ``components.example_gen`` @component inside a real TFX pipeline run by
LocalDagRunner (both on the same hand-counted files)."""

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.orchestration import metadata
from tfx.types import artifact_utils

from components import example_gen
from data import ingest, records, splits
from data.examples import write_examples
from data.sources import DatasetSpec, make_source
from trainer import features

SEED, EVAL_FRACTION = 42, 0.5
RANDOM = splits.SplitConfig(seed=SEED, eval_fraction=EVAL_FRACTION)

ITEM_LINES = [
    "1|Toy Story (1995)|01-Jan-1995||http://x|0|0|0|1|1|1|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "2|Chasing Amy (1997)|01-Jan-1997||http://x|0|0|0|0|0|1|0|0|1|0|0|0|0|0|1|0|0|0|0",
    "3|Chasing Amy (1997)|04-Apr-1997||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0",
    "4|unknown||||1|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0|0",
    "5|Misérables, Les (1995)|||http://x|0|0|0|0|0|0|0|0|1|0|0|0|1|0|0|0|0|0|0",
    "6|Broken (1990)|01-Jan-1990",  # field_count
    "",  # blank_line
    "7|Bad Date (1990)|1990-01-01||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0",  # bad_value
]
USER_LINES = [
    "1|24|M|technician|85711",
    "2|53|F|other|94043",
    "3||M|writer|32067",  # unknown age -> 0
    "x|30|F|artist|00000",  # bad_value
    "2|99|F|lawyer|11111",  # duplicate
]
DATA_LINES = [
    "1\t1\t5\t881250949",
    "1\t2\t4\t881250950",
    "2\t3\t3\t881250951",
    "2\t4\t2\t881250952",
    "3\t1\t1\t881250953",
    "1\t1\t3\t881250000",  # older rating of (1, 1): duplicate
    "2\t1\t4\t881250960",  # older rating of (2, 1): duplicate
    "2\t1\t5\t881250970",
    "1\t2\t4",  # field_count
    "",  # blank_line
    "1\t3\tfive\t881250999",  # bad_rating
    "1\t3\t6\t881250999",  # bad_rating
    "1\t3\t0\t881250999",  # bad_rating
    "1\t99\t4\t881250999",  # unknown_movie
    "42\t1\t4\t881250999",  # unknown_user
    "1\t6\t4\t881250999",  # unknown_movie: movie 6 was rejected from u.item
    "1\t3\t4\tabc",  # bad_value
    "3\t3\t2.5\t881251000",
]
KEPT_PAIRS = {("1", "1"), ("1", "2"), ("2", "3"), ("2", "4"), ("3", "1"), ("2", "1"), ("3", "3")}
# Hand-counted from the comments above.
EXPECTED_REJECTS = {
    records.BLANK_LINE: 2,
    records.FIELD_COUNT: 2,
    records.BAD_VALUE: 3,
    records.BAD_RATING: 3,
    records.UNKNOWN_MOVIE: 2,
    records.UNKNOWN_USER: 1,
    records.DUPLICATE: 3,
    records.MALFORMED: 0,
}
RATING_KEYS = {
    features.USER_ID,
    features.MOVIE_ID,
    features.MOVIE_TITLE,
    features.RATING,
    features.TIMESTAMP,
    features.GENRES,
    features.RELEASE_YEAR,
    features.USER_AGE,
    features.USER_GENDER,
}


def _write_dataset(directory: Path, items=ITEM_LINES, users=USER_LINES, data=DATA_LINES) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in (("u.item", items), ("u.user", users), ("u.data", data)):
        (directory / name).write_bytes("".join(f"{line}\n" for line in lines).encode("latin-1"))
    return str(directory)


def _write_ml100k(data_dir: str, examples_uri: str, catalogue_uri: str, *args, **kwargs) -> dict:
    """``write_examples`` of the MovieLens 100k files (u.data, u.item, u.user) in ``data_dir``."""
    source = make_source(DatasetSpec(kind="ml-100k", path=data_dir))
    return write_examples(source, examples_uri, catalogue_uri, *args, **kwargs)


def _decode(example: tf.train.Example) -> dict:
    """Feature key -> list of Python values (bytes decoded as UTF-8)."""
    out = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value)
        out[key] = [v.decode() for v in values] if kind == "bytes_list" else values
    return out


def _files(uri: str, split: str) -> list[str]:
    return sorted(str(f) for f in Path(uri, f"Split-{split}").glob("*.gz"))


def _read_file(path: str) -> list[dict]:
    ds = tf.data.TFRecordDataset(path, compression_type="GZIP")
    return [_decode(tf.train.Example.FromString(r.numpy())) for r in ds]


def _read(uri: str, split: str) -> list[dict]:
    ds = tf.data.TFRecordDataset(_files(uri, split), compression_type="GZIP")
    return [_decode(tf.train.Example.FromString(r.numpy())) for r in ds]


@pytest.fixture
def written(tmp_path):
    data_dir = _write_dataset(tmp_path / "ml-100k")
    examples_uri, catalogue_uri = str(tmp_path / "examples"), str(tmp_path / "catalogue")
    stats = _write_ml100k(data_dir, examples_uri, catalogue_uri, split=RANDOM)
    return stats, examples_uri, catalogue_uri


def _by_pair(examples_uri: str) -> dict:
    rows = {}
    for split in (features.TRAIN_SPLIT, features.EVAL_SPLIT):
        for ex in _read(examples_uri, split):
            rows[(ex[features.USER_ID][0], ex[features.MOVIE_ID][0])] = (split, ex)
    return rows


def test_rating_examples_hold_every_field(written):
    _, examples_uri, _ = written
    rows = _by_pair(examples_uri)
    assert set(rows) == KEPT_PAIRS
    assert all(set(ex) == RATING_KEYS for _, ex in rows.values())
    assert rows[("1", "1")][1] == {
        features.USER_ID: ["1"],
        features.MOVIE_ID: ["1"],
        features.MOVIE_TITLE: ["Toy Story (1995)"],
        features.RATING: [5.0],
        features.TIMESTAMP: [881250949],
        features.GENRES: ["Animation", "Children's", "Comedy"],
        features.RELEASE_YEAR: [1995],
        features.USER_AGE: [24],
        features.USER_GENDER: ["M"],
    }
    # The "unknown" movie: no genre, no year. User 2's duplicate line in u.user was ignored.
    assert rows[("2", "4")][1] == {
        features.USER_ID: ["2"],
        features.MOVIE_ID: ["4"],
        features.MOVIE_TITLE: ["unknown"],
        features.RATING: [2.0],
        features.TIMESTAMP: [881250952],
        features.GENRES: [],
        features.RELEASE_YEAR: [0],
        features.USER_AGE: [53],
        features.USER_GENDER: ["F"],
    }
    # Pair (2, 1) was rated three times in u.data order 4, 5: the latest (5 at ...970) is kept.
    assert rows[("2", "1")][1][features.RATING] == [5.0]
    assert rows[("2", "1")][1][features.TIMESTAMP] == [881250970]
    # Same title as movie 2, different id, date 04-Apr-1997; user 3 has no age.
    assert rows[("3", "3")][1] == {
        features.USER_ID: ["3"],
        features.MOVIE_ID: ["3"],
        features.MOVIE_TITLE: ["Chasing Amy (1997)"],
        features.RATING: [2.5],
        features.TIMESTAMP: [881251000],
        features.GENRES: ["Drama"],
        features.RELEASE_YEAR: [1997],
        features.USER_AGE: [0],
        features.USER_GENDER: ["M"],
    }


def test_splits_follow_split_of(written):
    stats, examples_uri, _ = written
    rows = _by_pair(examples_uri)
    for (user_id, movie_id), (split, _) in rows.items():
        assert split == splits.split_of(user_id, movie_id, SEED, EVAL_FRACTION)
    expected_eval = sum(
        splits.split_of(u, m, SEED, EVAL_FRACTION) == features.EVAL_SPLIT for u, m in KEPT_PAIRS
    )
    assert 0 < expected_eval < len(KEPT_PAIRS)  # both splits are exercised with this seed
    assert stats["num_eval"] == expected_eval
    assert stats["num_train"] == len(KEPT_PAIRS) - expected_eval
    recorded = {
        "kind": "random",
        "seed": SEED,
        "eval_fraction": EVAL_FRACTION,
        "leave_last_n": 1,
        "cutoff_timestamp": None,
    }
    assert stats["split"] == recorded
    assert json.loads(Path(examples_uri, "split.json").read_text()) == recorded


# A dataset for the time and leave_last_n splits: small timestamps, ties, and rejected lines
# that would change both splits if they counted. Movies 9 and 10 tell numeric from string
# order.
SPLIT_ITEM_LINES = ITEM_LINES[:5] + [
    "9|Nine (1999)|01-Jan-1999||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0",
    "10|Ten (2000)|01-Jan-2000||http://x|0|0|0|0|0|0|0|0|1|0|0|0|0|0|0|0|0|0|0",
]
SPLIT_DATA_LINES = [
    "1\t1\t4\t100",
    "1\t9\t3\t300",
    "1\t10\t5\t300",  # same time as (1, 9); movie 10 > 9, so this is user 1's latest
    "1\t4\t2\t200",
    "1\t5\t1\t50",
    "2\t1\t4\t400",
    "2\t2\t3\t150",
    "2\t2\t5\t90",  # older rating of (2, 2): duplicate
    "3\t5\t2\t500",
    "3\t5\t4\t40",  # older rating of (3, 5): duplicate, so user 3 has one rating
    "3\t1\t9\t700",  # bad_rating
    "3\t99\t4\t800",  # unknown_movie
]
# Kept: user 1 at 100, 300, 300, 200, 50; user 2 at 400, 150; user 3 at 500.
SPLIT_KEPT_PAIRS = {
    ("1", "1"),
    ("1", "9"),
    ("1", "10"),
    ("1", "4"),
    ("1", "5"),
    ("2", "1"),
    ("2", "2"),
    ("3", "5"),
}


def _write_split(tmp_path: Path, split: splits.SplitConfig) -> tuple[dict, dict, dict]:
    """Writes SPLIT_DATA_LINES with ``split``: (stats, split.json, split name -> pairs)."""
    data_dir = _write_dataset(tmp_path / "d", SPLIT_ITEM_LINES, USER_LINES[:3], SPLIT_DATA_LINES)
    examples_uri = str(tmp_path / "ex")
    stats = _write_ml100k(data_dir, examples_uri, str(tmp_path / "cat"), split=split)
    pairs = {split_name: set() for split_name in ingest.RATING_SPLITS}
    for pair, (split_name, _) in _by_pair(examples_uri).items():
        pairs[split_name].add(pair)
    recorded = json.loads(Path(examples_uri, "split.json").read_text())
    assert stats["split"] == recorded
    assert stats["num_eval"] == len(pairs[features.EVAL_SPLIT])
    assert stats["num_train"] == len(pairs[features.TRAIN_SPLIT])
    return stats, recorded, pairs


def test_time_split_holds_out_ratings_after_the_cutoff(tmp_path):
    split = splits.SplitConfig(kind="time", seed=5, eval_fraction=0.3)
    stats, recorded, pairs = _write_split(tmp_path, split)
    # Sorted kept timestamps: 50 100 150 200 300 300 400 500. Rank ceil(0.7 * 8) = 6 -> 300.
    # Both ratings at 300 stay in train, so 2 of 8 are eval. Counting the rejected lines
    # (40, 90, 700, 800) would give rank 9 of 12 -> 400.
    assert recorded == {
        "kind": "time",
        "seed": 5,
        "eval_fraction": 0.3,
        "leave_last_n": 1,
        "cutoff_timestamp": 300,
    }
    assert pairs[features.EVAL_SPLIT] == {("2", "1"), ("3", "5")}
    assert pairs[features.TRAIN_SPLIT] == SPLIT_KEPT_PAIRS - {("2", "1"), ("3", "5")}
    assert stats["rejects"][records.DUPLICATE] == 2


def test_time_split_is_planned_from_kept_ratings_only(tmp_path):
    # Only the kept (5, 9) at t=10 and (6, 9) at t=20 count: the duplicate (t=1) and the bad
    # rating (t=99) would move the cutoff if they did.
    data_dir = _write_dataset(
        tmp_path / "d",
        SPLIT_ITEM_LINES,
        ["5|20|M|x|1", "6|30|F|y|2"],
        ["5\t9\t1\t10", "5\t9\t5\t1", "6\t9\t0\t99", "6\t9\t4\t20"],
    )
    split = splits.SplitConfig("time", eval_fraction=0.5)
    stats = _write_ml100k(data_dir, str(tmp_path / "ex"), str(tmp_path / "cat"), split=split)
    assert stats["split"]["cutoff_timestamp"] == 10
    assert stats["rejects"][records.DUPLICATE] == stats["rejects"][records.BAD_RATING] == 1


@pytest.mark.parametrize(
    "n, expected_eval",
    [
        # User 1's latest is (1, 10), tied with (1, 9) at 300. User 2 has 2 ratings, its
        # latest is (2, 1) at 400. User 3 has one rating (its duplicate does not count).
        (1, {("1", "10"), ("2", "1")}),
        # Only user 1 has more than 2 ratings.
        (2, {("1", "10"), ("1", "9")}),
        # User 1 has 5 ratings: at most 5 held out means none.
        (5, set()),
    ],
)
def test_leave_last_n_split_holds_out_each_users_latest(tmp_path, n, expected_eval):
    split = splits.SplitConfig(kind="leave_last_n", leave_last_n=n)
    _, recorded, pairs = _write_split(tmp_path, split)
    assert recorded == {
        "kind": "leave_last_n",
        "seed": 42,
        "eval_fraction": 0.2,
        "leave_last_n": n,
        "cutoff_timestamp": None,
    }
    assert pairs[features.EVAL_SPLIT] == expected_eval
    assert pairs[features.TRAIN_SPLIT] == SPLIT_KEPT_PAIRS - expected_eval


def test_write_requires_a_split_config(tmp_path):
    data_dir = _write_dataset(tmp_path / "d")
    with pytest.raises(TypeError):
        _write_ml100k(  # the pre-SplitConfig call
            data_dir, str(tmp_path / "ex"), str(tmp_path / "cat"), SEED, EVAL_FRACTION
        )


def test_catalogue_has_every_movie(written):
    stats, _, catalogue_uri = written
    catalogue = _read(catalogue_uri, features.CATALOGUE_SPLIT)
    assert stats["num_catalogue"] == 5
    assert catalogue == [
        {
            features.MOVIE_ID: ["1"],
            features.MOVIE_TITLE: ["Toy Story (1995)"],
            features.GENRES: ["Animation", "Children's", "Comedy"],
            features.RELEASE_YEAR: [1995],
        },
        {
            features.MOVIE_ID: ["2"],
            features.MOVIE_TITLE: ["Chasing Amy (1997)"],
            features.GENRES: ["Comedy", "Drama", "Romance"],
            features.RELEASE_YEAR: [1997],
        },
        {
            features.MOVIE_ID: ["3"],
            features.MOVIE_TITLE: ["Chasing Amy (1997)"],
            features.GENRES: ["Drama"],
            features.RELEASE_YEAR: [1997],
        },
        {
            features.MOVIE_ID: ["4"],
            features.MOVIE_TITLE: ["unknown"],
            features.GENRES: [],
            features.RELEASE_YEAR: [0],
        },
        # Nobody rated it; no release date, so the year comes from the title. latin-1 é.
        {
            features.MOVIE_ID: ["5"],
            features.MOVIE_TITLE: ["Misérables, Les (1995)"],
            features.GENRES: ["Drama", "Musical"],
            features.RELEASE_YEAR: [1995],
        },
    ]
    assert all(tuple(sorted(ex)) == tuple(sorted(features.CATALOGUE_KEYS)) for ex in catalogue)


def test_rejects_are_counted_and_listed(written):
    stats, examples_uri, _ = written
    assert stats["rejects"] == EXPECTED_REJECTS
    with open(os.path.join(examples_uri, "rejects.csv"), newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["file", "line", "reason", "raw"]
    assert len(rows) - 1 == sum(EXPECTED_REJECTS.values())
    assert ["u.item", "6", records.FIELD_COUNT, ITEM_LINES[5]] in rows
    assert ["u.user", "5", records.DUPLICATE, USER_LINES[4]] in rows
    assert ["u.data", "6", records.DUPLICATE, DATA_LINES[5]] in rows
    assert ["u.data", "7", records.DUPLICATE, DATA_LINES[6]] in rows
    assert ["u.data", "16", records.UNKNOWN_MOVIE, DATA_LINES[15]] in rows
    assert ["u.data", "10", records.BLANK_LINE, ""] in rows


@pytest.mark.parametrize(
    "split",
    [
        RANDOM,
        splits.SplitConfig(kind="time", eval_fraction=0.3),
        splits.SplitConfig(kind="leave_last_n", leave_last_n=1),
    ],
    ids=lambda split: split.kind,
)
def test_two_runs_write_identical_outputs(tmp_path, split):
    """The same examples in the same files and order, and byte-identical catalogue, rejects
    and split record. (Example bytes may differ: the C++ encoder's feature-map order is not
    fixed, and tf.Example parsing does not depend on it.)"""
    data_dir = _write_dataset(tmp_path / "ml-100k")
    outputs = []
    for run in ("a", "b"):
        ex, cat = tmp_path / run / "examples", tmp_path / run / "catalogue"
        _write_ml100k(data_dir, str(ex), str(cat), split=split)
        examples = {
            (s, Path(f).name): _read_file(f)
            for s in ingest.RATING_SPLITS
            for f in _files(str(ex), s)
        }
        files = _files(str(cat), features.CATALOGUE_SPLIT) + [ex / "rejects.csv"]
        files += [ex / "split.json"]
        outputs.append((examples, [Path(f).read_bytes() for f in files]))
    assert outputs[0] == outputs[1]
    assert all(outputs[0][0].values()) and all(outputs[0][1])


def test_clean_input_writes_header_only_rejects(tmp_path):
    data_dir = _write_dataset(tmp_path / "d", ITEM_LINES[:5], USER_LINES[:3], DATA_LINES[:5])
    stats = _write_ml100k(data_dir, str(tmp_path / "ex"), str(tmp_path / "cat"), split=RANDOM)
    assert (tmp_path / "ex" / "rejects.csv").read_text() == "file,line,reason,raw\n"
    assert sum(stats["rejects"].values()) == 0
    assert stats["num_train"] + stats["num_eval"] == 5


@pytest.mark.parametrize(
    "missing, items, users, data",
    [
        ("u.user", ITEM_LINES, None, DATA_LINES),
        ("u.item", ["", "1|too few"], USER_LINES, DATA_LINES),
        ("u.user", ITEM_LINES, ["x|1|M|a|1"], DATA_LINES),
        ("u.data", ITEM_LINES, USER_LINES, DATA_LINES[8:17]),
    ],
)
def test_missing_or_empty_file_is_named(tmp_path, missing, items, users, data):
    data_dir = _write_dataset(tmp_path / "d", items, users or [], data)
    if users is None:
        os.remove(os.path.join(data_dir, "u.user"))
    with pytest.raises(ValueError, match=f"{data_dir}/{missing}"):
        _write_ml100k(data_dir, str(tmp_path / "ex"), str(tmp_path / "cat"), split=RANDOM)


def _real_ml100k() -> str:
    path = Path(os.environ.get("MOVIEREC_DATA_HOME", "/work/shared/data")) / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.skip(f"MovieLens 100k not found at {path}")
    return str(path)


def test_real_ml100k(tmp_path):
    stats = _write_ml100k(
        _real_ml100k(), str(tmp_path / "ex"), str(tmp_path / "cat"), split=splits.SplitConfig()
    )
    total = stats["num_train"] + stats["num_eval"]
    assert total == 100_000
    assert 0.19 <= stats["num_eval"] / total <= 0.21
    assert stats["num_catalogue"] == 1682
    assert sum(stats["rejects"].values()) == 0
    n_eval = sum(
        1
        for _ in tf.data.TFRecordDataset(
            _files(str(tmp_path / "ex"), features.EVAL_SPLIT), compression_type="GZIP"
        )
    )
    assert n_eval == stats["num_eval"]


def _columns(uri: str, split: str) -> dict[str, np.ndarray]:
    """User id, movie id (both bytes) and timestamp columns of one split."""
    spec = {
        features.USER_ID: tf.io.FixedLenFeature([], tf.string),
        features.MOVIE_ID: tf.io.FixedLenFeature([], tf.string),
        features.TIMESTAMP: tf.io.FixedLenFeature([], tf.int64),
    }
    ds = tf.data.TFRecordDataset(_files(uri, split), compression_type="GZIP")
    batches = list(ds.batch(10_000).map(lambda x: tf.io.parse_example(x, spec)))
    return {key: np.concatenate([b[key].numpy() for b in batches]) for key in spec}


def _rows(columns: dict[str, np.ndarray]):
    """(user id, (timestamp, movie id as int)) per example."""
    keys = (features.USER_ID, features.TIMESTAMP, features.MOVIE_ID)
    for user_id, timestamp, movie_id in zip(*(columns[k] for k in keys), strict=True):
        yield user_id, (int(timestamp), int(movie_id))


def test_real_ml100k_time_and_leave_last_n(tmp_path):
    data_dir = _real_ml100k()
    split = splits.SplitConfig(kind="time", eval_fraction=0.2)
    stats = _write_ml100k(data_dir, str(tmp_path / "time"), str(tmp_path / "cat"), split=split)
    train = _columns(str(tmp_path / "time"), features.TRAIN_SPLIT)
    eval_ = _columns(str(tmp_path / "time"), features.EVAL_SPLIT)
    assert len(train[features.TIMESTAMP]) + len(eval_[features.TIMESTAMP]) == 100_000
    assert 0.195 <= len(eval_[features.TIMESTAMP]) / 100_000 <= 0.205
    assert eval_[features.TIMESTAMP].min() > train[features.TIMESTAMP].max()
    assert stats["split"]["cutoff_timestamp"] == train[features.TIMESTAMP].max()

    split = splits.SplitConfig(kind="leave_last_n", leave_last_n=1)
    stats = _write_ml100k(data_dir, str(tmp_path / "last"), str(tmp_path / "cat"), split=split)
    train = _columns(str(tmp_path / "last"), features.TRAIN_SPLIT)
    eval_ = _columns(str(tmp_path / "last"), features.EVAL_SPLIT)
    assert stats["num_eval"] == len(eval_[features.USER_ID]) == 943  # every user has >= 20
    assert len(set(eval_[features.USER_ID])) == 943
    # Each user's held-out rating is later, by (timestamp, movie id), than all its others.
    held_out = dict(_rows(eval_))
    assert all(order < held_out[user_id] for user_id, order in _rows(train))


# Kept pairs of DATA_LINES by user, with timestamps - 881250000: user 1 at 949 (1, 1) and
# 950 (1, 2); user 2 at 951 (2, 3), 952 (2, 4) and 970 (2, 1); user 3 at 953 (3, 1) and
# 1000 (3, 3). Only user 2 has more than 2 ratings; its 2 latest are (2, 1) and (2, 4).
LAST_2_EVAL_PAIRS = {("2", "1"), ("2", "4")}
RANDOM_EVAL_PAIRS = {
    (u, m)
    for u, m in KEPT_PAIRS
    if splits.split_of(u, m, SEED, EVAL_FRACTION) == features.EVAL_SPLIT
}


@pytest.mark.parametrize(
    "split_kind, leave_last_n, expected_eval_pairs",
    [("random", 1, RANDOM_EVAL_PAIRS), ("leave_last_n", 2, LAST_2_EVAL_PAIRS)],
)
def test_component_in_local_dag_runner(tmp_path, split_kind, leave_last_n, expected_eval_pairs):
    data_dir = _write_dataset(tmp_path / "ml-100k")
    gen = example_gen.MovieRecExampleGen(
        dataset=DatasetSpec(kind="ml-100k", path=data_dir).to_json(),
        seed=SEED,
        eval_fraction=EVAL_FRACTION,
        split_kind=split_kind,
        leave_last_n=leave_last_n,
    )
    db = str(tmp_path / "metadata.sqlite")
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name="example_gen_test",
            pipeline_root=str(tmp_path / "root"),
            components=[gen],
            metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
                db
            ),
        )
    )
    config = tfx.orchestration.metadata.sqlite_metadata_connection_config(db)
    with metadata.Metadata(config) as m:
        artifacts = m.store.get_artifacts()
        types = {t.id: t.name for t in m.store.get_artifact_types()}
    assert [types[a.type_id] for a in artifacts] == ["Examples", "Examples"]
    # TFX puts outputs at <pipeline_root>/<component id>/<output key>/<execution id>.
    uris = {Path(a.uri).parent.name: a for a in artifacts}
    examples, catalogue = uris["examples"], uris["catalogue"]
    assert artifact_utils.decode_split_names(examples.properties["split_names"].string_value) == [
        features.TRAIN_SPLIT,
        features.EVAL_SPLIT,
    ]
    assert artifact_utils.decode_split_names(catalogue.properties["split_names"].string_value) == [
        features.CATALOGUE_SPLIT
    ]
    expected_eval = len(expected_eval_pairs)
    props = examples.custom_properties
    assert props["num_eval"].int_value == expected_eval
    assert props["num_train"].int_value == len(KEPT_PAIRS) - expected_eval
    assert props["num_rejects"].int_value == sum(EXPECTED_REJECTS.values())
    assert props["num_rejects_duplicate"].int_value == 3
    recorded = {
        "kind": split_kind,
        "seed": SEED,
        "eval_fraction": EVAL_FRACTION,
        "leave_last_n": leave_last_n,
        "cutoff_timestamp": None,
    }
    assert json.loads(props["split_config"].string_value) == recorded
    assert json.loads(Path(examples.uri, "split.json").read_text()) == recorded
    assert catalogue.custom_properties["num_catalogue"].int_value == 5
    rows = _by_pair(examples.uri)
    eval_pairs = {pair for pair, (split, _) in rows.items() if split == features.EVAL_SPLIT}
    assert eval_pairs == expected_eval_pairs
    assert set(rows) == KEPT_PAIRS
    assert len(_read(catalogue.uri, features.CATALOGUE_SPLIT)) == 5
