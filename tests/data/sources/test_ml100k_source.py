"""Tests of the ml-100k source: data.records' parsing, without deduplication."""

import os

import pytest

from data import data_home
from data.records import (
    BAD_RATING,
    BAD_VALUE,
    BLANK_LINE,
    FIELD_COUNT,
    UNKNOWN_MOVIE,
    UNKNOWN_USER,
    Movie,
    Rating,
    Reject,
    User,
    iter_ratings,
)
from data.sources.ml100k import MovieLens100kSource

ZEROS = "|".join(["0"] * 19)
COMEDY = "|".join("1" if i == 5 else "0" for i in range(19))


def _write(path, lines):
    path.write_bytes("".join(line + "\n" for line in lines).encode("latin-1"))


@pytest.fixture
def source(tmp_path):
    _write(
        tmp_path / "u.item",
        [
            f"1|Toy Story (1995)|01-Jan-1995||http://x|{COMEDY}",
            f"2|Misérables, Les (1995)|||http://x|{ZEROS}",
            "3|Too few",
        ],
    )
    _write(tmp_path / "u.user", ["7|24|M|technician|85711", "8|x|F|other|1"])
    _write(
        tmp_path / "u.data",
        [
            "7\t1\t3\t100",  # 1
            "7\t1\t5\t200",  # 2: the same pair again; both come out
            "7\t2\t4\t100",  # 3
            "7\t3\t4\t100",  # 4: unknown_movie
            "8\t1\t4\t100",  # 5: unknown_user (u.user rejected user 8)
            "7\t1\t6\t100",  # 6: bad_rating
            "",  # 7: blank_line
        ],
    )
    return MovieLens100kSource(tmp_path)


def test_reads_the_three_files(source):
    rejects = []
    movies = source.read_movies(rejects)
    users = source.read_users(rejects)
    assert movies == {
        "1": Movie("1", "Toy Story (1995)", ("Comedy",), 1995),
        "2": Movie("2", "Misérables, Les (1995)", (), 1995),
    }
    assert users == {"7": User("7", 24, "M", "technician")}
    assert rejects == [
        Reject("u.item", 3, FIELD_COUNT, "3|Too few"),
        Reject("u.user", 2, BAD_VALUE, "8|x|F|other|1"),
    ]
    (shard,) = source.rating_shards()
    records = list(source.read_ratings(shard, movies, users))
    assert records == [
        Rating("7", "1", 3.0, 100),
        Rating("7", "1", 5.0, 200),
        Rating("7", "2", 4.0, 100),
        Reject("u.data", 4, UNKNOWN_MOVIE, "7\t3\t4\t100"),
        Reject("u.data", 5, UNKNOWN_USER, "8\t1\t4\t100"),
        Reject("u.data", 6, BAD_RATING, "7\t1\t6\t100"),
        Reject("u.data", 7, BLANK_LINE, ""),
    ]
    assert [(r.line_number, r.raw_line) for r in records[:3]] == [
        (1, "7\t1\t3\t100"),
        (2, "7\t1\t5\t200"),
        (3, "7\t2\t4\t100"),
    ]


def test_missing_files_and_empty_ratings_raise(tmp_path):
    source = MovieLens100kSource(tmp_path)
    with pytest.raises(ValueError, match=f"MovieLens file {tmp_path}/u.data is missing"):
        source.rating_shards()
    with pytest.raises(ValueError, match="u.item is missing"):
        source.read_movies([])
    _write(tmp_path / "u.data", ["x\t1\t1\t1"])
    (shard,) = source.rating_shards()
    records = source.read_ratings(shard, None, None)
    assert next(records) == Reject("u.data", 1, BAD_VALUE, "x\t1\t1\t1")
    with pytest.raises(ValueError, match="u.data has no valid rating line"):
        next(records)


def test_real_ml100k_matches_movielens_readers():
    directory = data_home.resolve_data_home(os.environ) / "ml-100k"
    if not (directory / "u.data").is_file():
        pytest.skip(f"ml-100k is not at {directory}")
    source = MovieLens100kSource(directory)
    rejects = []
    movies, users = source.read_movies(rejects), source.read_users(rejects)
    (shard,) = source.rating_shards()
    records = list(source.read_ratings(shard, movies, users))
    assert (len(movies), len(users), rejects) == (1682, 943, [])
    # ml-100k rates no pair twice, so deduplicating changes nothing.
    assert records == list(iter_ratings(directory / "u.data", movies, users))
    assert len(records) == 100_000 and all(isinstance(r, Rating) for r in records)
