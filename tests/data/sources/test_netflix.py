"""Tests of the Netflix source on messy files written here, as real copies of the CSVs come."""

import pytest

from data.records import (
    BAD_RATING,
    BAD_VALUE,
    BLANK_LINE,
    FIELD_COUNT,
    UNKNOWN_MOVIE,
    Movie,
    Rating,
    Reject,
)
from data.sources.netflix import NetflixSource

MOVIE_LINES = [
    "Movie_ID,Year,Name",  # 1
    "1,2003,Dinosaur Planet",  # 2
    "2,NULL,Isle of Man TT 2004 Review",  # 3: year 0
    "3,,Character",  # 4: year 0
    "4,1999.0,Paula Abdul's Get Up & Dance",  # 5: pandas' float year
    "5,2004,At Home Among Strangers, A Stranger Among His Own",  # 6: unquoted commas
    '6,1997,"The Rise and Fall of ""Ziggy"", Part 1"',  # 7: quoted
    "7,199x,Bad Year",  # 8: bad_value
    "8,2001",  # 9: field_count
    "9,2002,Amélie",  # 10: latin-1 é
    ",,",  # 11: blank_line
    ",,",  # 12: blank_line
]
RATING_LINES = [
    " movie_id ,USER_ID,Rating",  # 1: any order, any case, spaces
    "1,1488844,3",  # 2
    "2,822109,5",  # 3
    "1,1488844,4",  # 4: same pair again, kept
    "5,885013,4.0",  # 5
    "1,30878,six",  # 6: bad_rating
    "1,30878,0",  # 7: bad_rating
    "1,30878,NaN",  # 8: bad_rating
    "77,30878,4",  # 9: unknown_movie
    "1,30878",  # 10: field_count
    "1,-30878,4",  # 11: bad_value
    ",,",  # 12: blank_line
    ",,",  # 13: blank_line
]


def _write(path, lines, encoding):
    path.write_bytes("".join(line + "\r\n" for line in lines).encode(encoding))


@pytest.fixture
def source(tmp_path):
    _write(tmp_path / "Netflix_Dataset_Movie.csv", MOVIE_LINES, "latin-1")
    _write(tmp_path / "Netflix_Dataset_Rating.csv", RATING_LINES, "utf-8")
    return NetflixSource(tmp_path)


def test_read_movies(source):
    rejects = []
    movies = source.read_movies(rejects)
    assert movies == {
        "1": Movie("1", "Dinosaur Planet", (), 2003),
        "2": Movie("2", "Isle of Man TT 2004 Review", (), 0),
        "3": Movie("3", "Character", (), 0),
        "4": Movie("4", "Paula Abdul's Get Up & Dance", (), 1999),
        "5": Movie("5", "At Home Among Strangers, A Stranger Among His Own", (), 2004),
        "6": Movie("6", 'The Rise and Fall of "Ziggy", Part 1', (), 1997),
        "9": Movie("9", "Amélie", (), 2002),
    }
    assert rejects == [
        Reject("Netflix_Dataset_Movie.csv", 8, BAD_VALUE, "7,199x,Bad Year"),
        Reject("Netflix_Dataset_Movie.csv", 9, FIELD_COUNT, "8,2001"),
        Reject("Netflix_Dataset_Movie.csv", 11, BLANK_LINE, ",,"),
        Reject("Netflix_Dataset_Movie.csv", 12, BLANK_LINE, ",,"),
    ]


def test_read_ratings_without_timestamps(source):
    assert not source.has_timestamps
    assert (source.min_rating, source.max_rating) == (1.0, 5.0)
    movies = source.read_movies([])
    (shard,) = source.rating_shards()
    records = list(source.read_ratings(shard, movies, None))

    def reject(number, reason):
        return Reject("Netflix_Dataset_Rating.csv", number, reason, RATING_LINES[number - 1])

    assert records == [
        Rating("1488844", "1", 3.0, 0),
        Rating("822109", "2", 5.0, 0),
        Rating("1488844", "1", 4.0, 0),
        Rating("885013", "5", 4.0, 0),
        reject(6, BAD_RATING),
        reject(7, BAD_RATING),
        reject(8, BAD_RATING),
        reject(9, UNKNOWN_MOVIE),
        reject(10, FIELD_COUNT),
        reject(11, BAD_VALUE),
        reject(12, BLANK_LINE),
        reject(13, BLANK_LINE),
    ]
    assert records[3].line_number == 5


def test_name_not_last_is_not_merged(tmp_path):
    lines = ["Name,Movie_ID,Year", '"Heat, Again",1,1995', "Heat, Again,2,1995"]
    _write(tmp_path / "Netflix_Dataset_Movie.csv", lines, "utf-8")
    rejects = []
    assert NetflixSource(tmp_path).read_movies(rejects) == {
        "1": Movie("1", "Heat, Again", (), 1995)
    }
    assert rejects == [Reject("Netflix_Dataset_Movie.csv", 3, FIELD_COUNT, lines[2])]


def test_missing_files_and_columns(tmp_path):
    source = NetflixSource(tmp_path)
    with pytest.raises(ValueError, match="Netflix_Dataset_Rating.csv is missing"):
        source.rating_shards()
    _write(tmp_path / "Netflix_Dataset_Rating.csv", ["User_ID,Movie_ID", "1,1"], "utf-8")
    with pytest.raises(ValueError, match="Netflix_Dataset_Rating.csv has no column 'Rating'"):
        source.rating_shards()
    _write(tmp_path / "Netflix_Dataset_Movie.csv", ["Movie_ID,Name", "1,A"], "utf-8")
    with pytest.raises(ValueError, match="Netflix_Dataset_Movie.csv has no column 'Year'"):
        source.read_movies([])
