"""Spans: which span directories a run reads, their spec, and their union as one source."""

import csv
import json

import pytest

from data import examples, examples_io, splits
from data.records import Movie, Rating, Reject, User
from data.sources import DatasetSpec, make_source
from data.sources.spans import SpansSource, list_spans, resolve_spans, spans_spec
from trainer import features


def _latest_span(root, name, movies, ratings):
    """A span in the MovieLens latest layout: movies (id, title), ratings lines."""
    span = root / name
    span.mkdir(parents=True)
    with open(span / "movies.csv", "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["movieId", "title", "genres"])
        writer.writerows([[m, t, "Drama"] for m, t in movies])
    (span / "ratings.csv").write_text(
        "userId,movieId,rating,timestamp\n" + "".join(line + "\n" for line in ratings)
    )
    return span


def test_list_and_resolve_spans_by_number(tmp_path):
    for name in ("span-2", "span-10", "span-1", "span-x", ".span-11.tmp", "span-3-partial"):
        (tmp_path / name).mkdir()
    (tmp_path / "span-12").write_text("a file, not a span")
    # Numbers, not text: span-10 is newer than span-2.
    assert list_spans(tmp_path) == ["span-1", "span-2", "span-10"]
    assert resolve_spans(tmp_path, 2) == ("span-2", "span-10")
    assert resolve_spans(tmp_path, 1) == ("span-10",)
    assert resolve_spans(tmp_path, 7) == ("span-1", "span-2", "span-10")


def test_resolve_spans_errors(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        resolve_spans(tmp_path / "missing", 1)
    with pytest.raises(ValueError, match="holds no span directory"):
        resolve_spans(tmp_path, 1)
    (tmp_path / "span-1").mkdir()
    with pytest.raises(ValueError, match="window"):
        resolve_spans(tmp_path, 0)


def test_spec_records_the_spans_so_a_new_span_changes_it(tmp_path):
    (tmp_path / "span-1").mkdir()
    (tmp_path / "span-2").mkdir()
    before = spans_spec(tmp_path, "movielens-latest", 2)
    assert before.to_dict() == {
        "kind": "spans",
        "path": str(tmp_path),
        "span_layout": "movielens-latest",
        "window": 2,
        "spans": ["span-1", "span-2"],
    }
    assert DatasetSpec.from_json(before.to_json()) == before
    (tmp_path / "span-3").mkdir()
    after = spans_spec(tmp_path, "movielens-latest", 2)
    assert after.spans == ("span-2", "span-3")
    assert after.to_json() != before.to_json()  # ExampleGen's parameter, so its cache key


SPANS = {"kind": "spans", "path": "/r", "span_layout": "movielens-latest", "window": 2}


@pytest.mark.parametrize(
    "value, field",
    [
        ({**SPANS, "spans": ["span-1"], "span_layout": "netflix"}, "span_layout"),
        ({**SPANS, "spans": ["span-1"], "window": 0}, "window"),
        ({**SPANS, "spans": ["span-1"], "window": "2"}, "window"),
        ({**SPANS, "spans": []}, "spans"),
        ({**SPANS, "spans": ["span-1", "span-2", "span-3"]}, "spans"),
        ({**SPANS, "spans": ["1"]}, "spans"),
        ({**SPANS, "spans": ["span-2", "span-1"]}, "oldest first"),
        ({**SPANS, "spans": ["span-1", "span-1"]}, "distinct"),
        ({**SPANS, "spans": ["span-1"], "path": None}, "path"),
        ({"kind": "ml-100k", "path": "/d", "window": 2}, "window"),
        ({"kind": "ml-100k", "path": "/d", "spans": ["span-1"]}, "spans"),
    ],
)
def test_bad_spans_specs_name_the_field(value, field):
    with pytest.raises(ValueError, match=field):
        DatasetSpec.from_json(json.dumps(value))


def test_unpinned_spans_are_the_latest_when_the_source_opens(tmp_path):
    """A spec without ``spans`` (what a compiled, scheduled pipeline carries) reads the latest
    ``window`` spans found when ExampleGen opens the source, so each run sees new drops."""
    spec = DatasetSpec.from_json(json.dumps({**SPANS, "path": str(tmp_path), "window": 2}))
    assert spec.spans is None and "spans" not in json.loads(spec.to_json())
    for name in ("span-1", "span-2", "span-9"):
        (tmp_path / name).mkdir()
    assert make_source(spec).spans == ("span-2", "span-9")
    (tmp_path / "span-10").mkdir()
    (tmp_path / ".span-11.tmp").mkdir()  # a drop still being written
    assert make_source(spec).spans == ("span-9", "span-10")


@pytest.fixture
def root(tmp_path):
    _latest_span(
        tmp_path,
        "span-1",
        [(1, "Old Title (1990)"), (2, "Two (1991)")],
        [
            "1,1,4.0,100",  # 2: replaced by span-2's later rating
            "1,2,3.0,100",  # 3
            "2,1,5.0,300",  # 4: same time as span-2's line 4: the newer span wins
            "2,9,4.0,100",  # 5: unknown_movie (in no span's catalogue)
        ],
    )
    _latest_span(
        tmp_path,
        "span-2",
        [(1, "New Title (1990)"), (3, "Three (1992)")],
        [
            "1,1,2.0,200",  # 2
            "3,2,4.5,200",  # 3: movie 2 is only in span-1's catalogue: known
            "2,1,1.0,300",  # 4
            "3,3,six,200",  # 5: bad_rating
        ],
    )
    _latest_span(tmp_path, "span-3", [(4, "Not read (2000)")], ["4,4,4.0,400"])
    return tmp_path


def test_catalogue_is_the_union_and_the_newest_span_wins(root):
    spec = DatasetSpec(
        kind="spans",
        path=str(root),
        span_layout="movielens-latest",
        window=3,
        spans=("span-1", "span-2"),
    )
    source = make_source(spec)
    rejects = []
    assert source.read_movies(rejects) == {
        "1": Movie("1", "New Title (1990)", ("Drama",), 1990),
        "2": Movie("2", "Two (1991)", ("Drama",), 1991),
        "3": Movie("3", "Three (1992)", ("Drama",), 1992),
    }
    assert rejects == []
    assert source.read_users([]) is None
    assert (source.min_rating, source.max_rating) == (0.5, 5.0)


def test_every_span_is_a_shard_and_rejects_name_their_span(root):
    source = SpansSource(root, "movielens-latest", ("span-1", "span-2"))
    movies = source.read_movies([])
    shards = source.rating_shards()
    assert [s.name for s in shards] == ["span-1/ratings.csv", "span-2/ratings.csv"]
    records = [r for shard in shards for r in source.read_ratings(shard, movies, None)]
    ratings = [
        (r.user_id, r.movie_id, r.rating, r.timestamp) for r in records if isinstance(r, Rating)
    ]
    assert ratings == [
        ("1", "1", 4.0, 100),
        ("1", "2", 3.0, 100),
        ("2", "1", 5.0, 300),
        ("1", "1", 2.0, 200),
        ("3", "2", 4.5, 200),
        ("2", "1", 1.0, 300),
    ]
    assert [r for r in records if isinstance(r, Reject)] == [
        Reject("span-1/ratings.csv", 5, "unknown_movie", "2,9,4.0,100"),
        Reject("span-2/ratings.csv", 5, "bad_rating", "3,3,six,200"),
    ]
    assert source.describe() == {
        "name": "spans",
        "kind": "spans",
        "path": str(root),
        "span_layout": "movielens-latest",
        "spans": ["span-1", "span-2"],
    }


def test_example_gen_keeps_each_pairs_latest_rating_across_spans(root, tmp_path):
    source = SpansSource(root, "movielens-latest", ("span-1", "span-2"))
    examples_uri, catalogue = str(tmp_path / "ex"), str(tmp_path / "cat")
    stats = examples.write_examples(
        source, examples_uri, catalogue, split=splits.SplitConfig(eval_fraction=0.0)
    )
    keys = (features.USER_ID, features.MOVIE_ID, features.RATING, features.MOVIE_TITLE)
    train = examples_io.read_columns(examples_uri, features.TRAIN_SPLIT, keys)
    rows = sorted(zip(*(train[k].tolist() for k in keys), strict=True))
    # (1, 1): span-2's later 2.0; (2, 1): equal timestamps, span-2's 1.0.
    assert rows == [
        ("1", "1", 2.0, "New Title (1990)"),
        ("1", "2", 3.0, "Two (1991)"),
        ("2", "1", 1.0, "New Title (1990)"),
        ("3", "2", 4.5, "Two (1991)"),
    ]
    assert stats["num_catalogue"] == 3
    assert {k: v for k, v in stats["rejects"].items() if v} == {
        "duplicate": 2,
        "unknown_movie": 1,
        "bad_rating": 1,
    }
    with open(tmp_path / "ex" / "rejects.csv", newline="") as f:
        listed = [(r["file"], r["line"], r["reason"]) for r in csv.DictReader(f)]
    assert listed == [
        ("span-1/ratings.csv", "2", "duplicate"),
        ("span-1/ratings.csv", "4", "duplicate"),
        ("span-1/ratings.csv", "5", "unknown_movie"),
        ("span-2/ratings.csv", "5", "bad_rating"),
    ]


ZEROS = "|".join(["0"] * 19)


def _ml100k_span(root, name, items, users, data):
    span = root / name
    span.mkdir(parents=True)
    for file, lines in (("u.item", items), ("u.user", users), ("u.data", data)):
        (span / file).write_bytes("".join(line + "\n" for line in lines).encode("latin-1"))


def test_ml100k_spans_join_their_user_tables(tmp_path):
    _ml100k_span(
        tmp_path,
        "span-1",
        [f"1|One (1995)|||http://x|{ZEROS}"],
        ["7|24|M|technician|85711"],
        ["7\t1\t3\t100"],
    )
    _ml100k_span(
        tmp_path,
        "span-2",
        [f"2|Two (1996)|||http://x|{ZEROS}"],
        ["7|25|M|writer|85711", "8|30|F|other|1"],
        ["8\t1\t4\t200", "7\t2\t5\t200"],
    )
    source = make_source(spans_spec(tmp_path, "ml-100k", 2))
    assert source.read_users([]) == {
        "7": User("7", 25, "M", "writer"),  # the newer span's record
        "8": User("8", 30, "F", "other"),
    }
    movies = source.read_movies([])
    assert sorted(movies) == ["1", "2"]
    users = source.read_users([])
    shards = source.rating_shards()
    assert [s.name for s in shards] == ["span-1/u.data", "span-2/u.data"]
    got = [
        (r.user_id, r.movie_id, r.rating)
        for shard in shards
        for r in source.read_ratings(shard, movies, users)
    ]
    assert got == [("7", "1", 3.0), ("8", "1", 4.0), ("7", "2", 5.0)]
