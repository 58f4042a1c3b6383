"""Tests of components.example_gen: the plain writer on tiny files, on real ml-100k, and the
@component inside a real TFX pipeline run by LocalDagRunner."""

import csv
import os
from pathlib import Path

import pytest
import tensorflow as tf
from tfx import v1 as tfx
from tfx.orchestration import metadata
from tfx.types import artifact_utils

from components import example_gen, movielens
from trainer import features

SEED, EVAL_FRACTION = 42, 0.5

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
    movielens.BLANK_LINE: 2,
    movielens.FIELD_COUNT: 2,
    movielens.BAD_VALUE: 3,
    movielens.BAD_RATING: 3,
    movielens.UNKNOWN_MOVIE: 2,
    movielens.UNKNOWN_USER: 1,
    movielens.DUPLICATE: 3,
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
    features.USER_OCCUPATION,
}


def _write_dataset(directory: Path, items=ITEM_LINES, users=USER_LINES, data=DATA_LINES) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    for name, lines in (("u.item", items), ("u.user", users), ("u.data", data)):
        (directory / name).write_bytes("".join(f"{line}\n" for line in lines).encode("latin-1"))
    return str(directory)


def _decode(example: tf.train.Example) -> dict:
    """Feature key -> list of Python values (bytes decoded as UTF-8)."""
    out = {}
    for key, feature in example.features.feature.items():
        kind = feature.WhichOneof("kind")
        values = list(getattr(feature, kind).value)
        out[key] = [v.decode() for v in values] if kind == "bytes_list" else values
    return out


def _read(uri: str, split: str) -> list[dict]:
    ds = tf.data.TFRecordDataset(example_gen.split_path(uri, split), compression_type="GZIP")
    return [_decode(tf.train.Example.FromString(r.numpy())) for r in ds]


@pytest.fixture
def written(tmp_path):
    data_dir = _write_dataset(tmp_path / "ml-100k")
    examples_uri, catalogue_uri = str(tmp_path / "examples"), str(tmp_path / "catalogue")
    stats = example_gen.write_movielens_examples(
        data_dir, examples_uri, catalogue_uri, SEED, EVAL_FRACTION
    )
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
        features.USER_OCCUPATION: ["technician"],
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
        features.USER_OCCUPATION: ["other"],
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
        features.USER_OCCUPATION: ["writer"],
    }


def test_splits_follow_split_of(written):
    stats, examples_uri, _ = written
    rows = _by_pair(examples_uri)
    for (user_id, movie_id), (split, _) in rows.items():
        assert split == movielens.split_of(user_id, movie_id, SEED, EVAL_FRACTION)
    expected_eval = sum(
        movielens.split_of(u, m, SEED, EVAL_FRACTION) == features.EVAL_SPLIT for u, m in KEPT_PAIRS
    )
    assert 0 < expected_eval < len(KEPT_PAIRS)  # both splits are exercised with this seed
    assert stats["num_eval"] == expected_eval
    assert stats["num_train"] == len(KEPT_PAIRS) - expected_eval


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
    assert ["u.item", "6", movielens.FIELD_COUNT, ITEM_LINES[5]] in rows
    assert ["u.user", "5", movielens.DUPLICATE, USER_LINES[4]] in rows
    assert ["u.data", "6", movielens.DUPLICATE, DATA_LINES[5]] in rows
    assert ["u.data", "7", movielens.DUPLICATE, DATA_LINES[6]] in rows
    assert ["u.data", "16", movielens.UNKNOWN_MOVIE, DATA_LINES[15]] in rows
    assert ["u.data", "10", movielens.BLANK_LINE, ""] in rows


def test_two_runs_write_identical_bytes(tmp_path):
    data_dir = _write_dataset(tmp_path / "ml-100k")
    outputs = []
    for run in ("a", "b"):
        ex, cat = tmp_path / run / "examples", tmp_path / run / "catalogue"
        example_gen.write_movielens_examples(data_dir, str(ex), str(cat), SEED, EVAL_FRACTION)
        files = [example_gen.split_path(str(ex), s) for s in example_gen.RATING_SPLITS]
        files += [example_gen.split_path(str(cat), features.CATALOGUE_SPLIT), ex / "rejects.csv"]
        outputs.append([Path(f).read_bytes() for f in files])
    assert outputs[0] == outputs[1]
    assert all(outputs[0])


def test_clean_input_writes_header_only_rejects(tmp_path):
    data_dir = _write_dataset(tmp_path / "d", ITEM_LINES[:5], USER_LINES[:3], DATA_LINES[:5])
    stats = example_gen.write_movielens_examples(
        data_dir, str(tmp_path / "ex"), str(tmp_path / "cat"), SEED, EVAL_FRACTION
    )
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
        example_gen.write_movielens_examples(
            data_dir, str(tmp_path / "ex"), str(tmp_path / "cat"), SEED, EVAL_FRACTION
        )


def _real_ml100k() -> str:
    path = Path(os.environ.get("MOVIEREC_DATA_HOME", "/work/shared/data")) / "ml-100k"
    if not (path / "u.data").is_file():
        pytest.skip(f"MovieLens 100k not found at {path}")
    return str(path)


def test_real_ml100k(tmp_path):
    stats = example_gen.write_movielens_examples(
        _real_ml100k(), str(tmp_path / "ex"), str(tmp_path / "cat"), 42, 0.2
    )
    total = stats["num_train"] + stats["num_eval"]
    assert total == 100_000
    assert 0.19 <= stats["num_eval"] / total <= 0.21
    assert stats["num_catalogue"] == 1682
    assert sum(stats["rejects"].values()) == 0
    n_eval = sum(
        1
        for _ in tf.data.TFRecordDataset(
            example_gen.split_path(str(tmp_path / "ex"), features.EVAL_SPLIT),
            compression_type="GZIP",
        )
    )
    assert n_eval == stats["num_eval"]


def test_component_in_local_dag_runner(tmp_path):
    data_dir = _write_dataset(tmp_path / "ml-100k")
    gen = example_gen.MovieLensExampleGen(data_dir=data_dir, seed=SEED, eval_fraction=EVAL_FRACTION)
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
    expected_eval = sum(
        movielens.split_of(u, m, SEED, EVAL_FRACTION) == features.EVAL_SPLIT for u, m in KEPT_PAIRS
    )
    props = examples.custom_properties
    assert props["num_eval"].int_value == expected_eval
    assert props["num_train"].int_value == len(KEPT_PAIRS) - expected_eval
    assert props["num_rejects"].int_value == sum(EXPECTED_REJECTS.values())
    assert props["num_rejects_duplicate"].int_value == 3
    assert catalogue.custom_properties["num_catalogue"].int_value == 5
    assert len(_read(examples.uri, features.EVAL_SPLIT)) == expected_eval
    assert len(_read(examples.uri, features.TRAIN_SPLIT)) == len(KEPT_PAIRS) - expected_eval
    assert len(_read(catalogue.uri, features.CATALOGUE_SPLIT)) == 5
