"""Tests of the table source on CSV and Parquet tables written here with pandas and pyarrow."""

import calendar
import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.records import BAD_RATING, BAD_VALUE, BLANK_LINE, MALFORMED, Movie, Rating, Reject
from data.sources import delimited, table
from data.sources.spec import TableColumns
from data.sources.table import TableSource

BILLION = 1_000_000_000  # 2001-09-09 01:46:40 UTC
UTC = datetime.timezone.utc
CSV_COLUMNS = TableColumns(user="uid", item="mid", rating="stars", timestamp="when", title="name")


def _utc(*fields) -> int:
    return calendar.timegm(datetime.datetime(*fields).timetuple())


def _records(source: TableSource, movies=None) -> list:
    return [r for shard in source.rating_shards() for r in source.read_ratings(shard, movies, None)]


@pytest.fixture
def csv_source(tmp_path):
    """A table as ``df.to_csv(index=False)`` writes it, then two lines a tool mangled."""
    frame = pd.DataFrame(
        {
            "uid": [10, 10, 11, 12, 13, 14, 15, 16],
            "mid": ["m1", "m2", "m1", "m3", "m2", None, "m4", "m2"],
            "stars": [4.5, np.nan, 3.0, 5.0, 6.0, 4.0, 2.0, 1.0],
            "when": [
                "2001-09-09 01:46:40",
                "2001-09-09",
                "1000000000",
                "2001-09-09T01:46:40+02:00",
                "2001-09-09",
                "2001-09-09",
                "soon",
                "2001-09-09T01:46:40.250Z",
            ],
            "name": ["Heat, The (1995)", "", "Other", 'Say "Hi", Again', "Two (2000)", "", "", ""],
        }
    )
    path = tmp_path / "ratings.csv"
    frame.to_csv(path, index=False)
    with open(path, "a", encoding="utf-8") as f:
        f.write(',,,,\n17,m1,"4.0,2001-09-09,x\n')
    return TableSource(path, CSV_COLUMNS)


def test_csv_ratings_and_rejects(csv_source):
    lines = open(csv_source.path, encoding="utf-8").read().splitlines()

    def reject(number, reason):
        return Reject("ratings.csv", number, reason, lines[number - 1])

    records = _records(csv_source, csv_source.read_movies([]))
    assert records == [
        Rating("10", "m1", 4.5, BILLION),
        reject(3, BAD_RATING),  # NaN, written as an empty field
        Rating("11", "m1", 3.0, BILLION),
        Rating("12", "m3", 5.0, BILLION - 2 * 3600),
        reject(6, BAD_RATING),  # 6.0 > max_rating
        reject(7, BAD_VALUE),  # no item
        reject(8, BAD_VALUE),  # "soon"
        Rating("16", "m2", 1.0, BILLION),
        reject(10, BLANK_LINE),
        reject(11, MALFORMED),
    ]
    assert [(r.line_number, r.raw_line) for r in records if isinstance(r, Rating)] == [
        (n, lines[n - 1]) for n in (2, 4, 5, 9)
    ]
    assert lines[1] == '10,m1,4.5,2001-09-09 01:46:40,"Heat, The (1995)"'


def test_csv_catalogue_is_the_distinct_items(csv_source):
    rejects = []
    assert csv_source.read_movies(rejects) == {
        "m1": Movie("m1", "Heat, The (1995)", (), 1995),
        "m2": Movie("m2", "Two (2000)", (), 2000),  # the first non-empty title of m2
        "m3": Movie("m3", 'Say "Hi", Again', (), 0),
        "m4": Movie("m4", "m4", (), 0),  # no title: the id
    }
    assert rejects == []  # read_ratings reports the bad rows, once


def test_tsv_without_title_or_timestamp(tmp_path):
    path = tmp_path / "r.tsv"
    path.write_text("u\ti\tr\n1\t7\t3\n2\t7\t10\n", encoding="utf-8")
    source = TableSource(path, TableColumns(user="u", item="i", rating="r"), max_rating=10)
    assert not source.has_timestamps
    assert source.read_movies([]) == {"7": Movie("7", "7", (), 0)}
    assert _records(source) == [Rating("1", "7", 3.0, 0), Rating("2", "7", 10.0, 0)]


def test_parquet_row_groups_make_shards(tmp_path, monkeypatch):
    moment = datetime.datetime(2001, 9, 9, 1, 46, 40, 500_000, tzinfo=UTC)
    later = moment + datetime.timedelta(days=1)
    arrow_table = pa.table(
        {
            "User": pa.array([1, 1, 2, 3, None, 4], pa.int64()),
            "Item": pa.array(["a", "b", "a", "c", "a", "b"]),
            "Score": pa.array([4.0, float("nan"), 5.0, 3.0, 4.0, 2.5]),
            "Time": pa.array(
                [moment, moment, later, later, moment, None], pa.timestamp("ms", "UTC")
            ),
            "Other": pa.array(["x"] * 6),
        }
    )
    path = tmp_path / "ratings.parquet"
    pq.write_table(arrow_table, path, row_group_size=2)
    monkeypatch.setattr(table, "_SHARD_ROWS", 3)
    # Names match case-insensitively when no column has the exact name.
    source = TableSource(
        path, TableColumns(user="user", item="item", rating="score", timestamp="time")
    )
    shards = source.rating_shards()
    assert [(s.name, s.spec) for s in shards] == [
        ("ratings.parquet@rows1-4", {"row_groups": [0, 1], "first_row": 0}),
        ("ratings.parquet@rows5-6", {"row_groups": [2], "first_row": 4}),
    ]
    records = _records(source)
    day = 86_400
    assert records == [
        Rating("1", "a", 4.0, BILLION),
        Reject("ratings.parquet", 2, BAD_RATING, f"1,b,nan,{BILLION}"),
        Rating("2", "a", 5.0, BILLION + day),
        Rating("3", "c", 3.0, BILLION + day),
        Reject("ratings.parquet", 5, BAD_VALUE, f",a,4.0,{BILLION}"),
        Reject("ratings.parquet", 6, BAD_VALUE, "4,b,2.5,"),
    ]
    assert (records[2].line_number, records[2].raw_line) == (3, f"2,a,5.0,{BILLION + day}")
    assert source.read_movies([]) == {m: Movie(m, m, (), 0) for m in ("a", "b", "c")}


def test_parquet_from_pandas(tmp_path):
    frame = pd.DataFrame(
        {
            "user_id": ["u1", "u2", "u1"],
            "movie_id": [7, 8, 8],
            "rating": [4, 5, 1],
            "ts": pd.to_datetime(["2001-09-09 01:46:40", "2020-02-29", "1969-12-31 23:59:59"]),
            "title": ["Se7en (1995)", "Eight", "Eight, again"],
        }
    )
    frame["movie_id"] = frame["movie_id"].astype("category")  # a dictionary column in Parquet
    path = tmp_path / "ratings.pq"
    frame.to_parquet(path)
    columns = TableColumns(
        user="user_id", item="movie_id", rating="rating", timestamp="ts", title="title"
    )
    source = TableSource(path, columns)
    assert source.read_movies([]) == {
        "7": Movie("7", "Se7en (1995)", (), 1995),
        "8": Movie("8", "Eight", (), 0),
    }
    assert _records(source) == [
        Rating("u1", "7", 4.0, BILLION),
        Rating("u2", "8", 5.0, _utc(2020, 2, 29)),
        Rating("u1", "8", 1.0, -1),
    ]


def test_parquet_date_and_text_timestamps(tmp_path):
    arrow_table = pa.table(
        {
            "u": ["1", "2", "3"],
            "i": ["1", "1", "1"],
            "r": ["4.5", "x", "3"],  # ratings stored as text
            "d": pa.array([datetime.date(2001, 9, 9), datetime.date(1970, 1, 2), None]),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(arrow_table, path)
    source = TableSource(path, TableColumns(user="u", item="i", rating="r", timestamp="d"))
    assert _records(source) == [
        Rating("1", "1", 4.5, _utc(2001, 9, 9)),
        Reject("t.parquet", 2, BAD_RATING, "2,1,x,86400"),
        Reject("t.parquet", 3, BAD_VALUE, "3,1,3,"),
    ]


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1000000000", BILLION),
        (" -5 ", -5),
        ("1000000000.0", BILLION),
        ("1000000000.5", None),
        (BILLION, BILLION),
        (1e9, BILLION),
        (float("nan"), None),
        (True, None),
        (None, None),
        ("2001-09-09", _utc(2001, 9, 9)),
        ("2001-09-09 01:46:40", BILLION),
        ("2001-09-09T01:46:40Z", BILLION),
        ("2001-09-09T01:46:40.123456789", BILLION),
        ("2001-09-09T03:46:40+02:00", BILLION),
        ("1969-12-31T23:59:59.5", -1),
        (datetime.datetime(2001, 9, 9, 1, 46, 40), BILLION),
        (datetime.date(1970, 1, 2), 86_400),
        ("09/09/2001", None),
        ("", None),
    ],
)
def test_timestamp_value(value, expected):
    assert delimited.timestamp_value(value) == expected


def test_missing_columns_name_file_and_column(tmp_path):
    csv_path = tmp_path / "r.csv"
    csv_path.write_text("uid,mid,stars,name\n1,2,3,x\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r.csv has no column 'when'"):
        TableSource(csv_path, CSV_COLUMNS).rating_shards()
    with pytest.raises(ValueError, match=r"r.csv has no column 'when'"):
        TableSource(csv_path, CSV_COLUMNS).read_movies([])
    pq_path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"uid": [1], "mid": [2]}), pq_path)
    with pytest.raises(ValueError, match=r"r.parquet has no column 'stars'"):
        TableSource(pq_path, CSV_COLUMNS).rating_shards()


def test_tables_without_valid_rows_raise(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("u,i,r\n,,\n1,2,zero\n", encoding="utf-8")
    source = TableSource(path, TableColumns(user="u", item="i", rating="r"))
    with pytest.raises(ValueError, match=r"r.csv has no valid rating line"):
        _records(source)
    path.write_text("u,i,r\n,,\n1,,3\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"r.csv has no valid row with an item in 'i'"):
        source.read_movies([])
    empty = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"u": pa.array([], pa.string()), "i": [], "r": []}), empty)
    with pytest.raises(ValueError, match="empty.parquet has no rows"):
        TableSource(empty, TableColumns(user="u", item="i", rating="r")).rating_shards()
