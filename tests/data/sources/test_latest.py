"""Tests of the MovieLens "latest" source on small files written here, one bad row of each kind."""

import pytest

from data.records import (
    BAD_RATING,
    BAD_VALUE,
    BLANK_LINE,
    DUPLICATE,
    FIELD_COUNT,
    MALFORMED,
    UNKNOWN_MOVIE,
    UNKNOWN_USER,
    Movie,
    Rating,
    Reject,
    User,
)
from data.sources import delimited
from data.sources.latest import MovieLensLatestSource

# UTF-8 with a byte-order mark and CRLF endings, as Windows tools write it.
MOVIE_LINES = [
    "movieId,title,genres",  # 1
    "1,Toy Story (1995),Adventure|Animation|Children",  # 2
    '2,"American President, The (1995)",Comedy|Drama|Romance',  # 3
    '3,"Movie ""Quoted"" Title, A (2001)",(no genres listed)',  # 4: no genres
    "4,No Year Movie,Drama",  # 5: year 0
    '5,"Unbalanced (1999),Drama',  # 6: malformed
    "x,Bad Id (1990),Drama",  # 7: bad_value
    "6,Too,Many,Fields",  # 8: field_count
    ",,",  # 9: blank_line
    "",  # 10: blank_line
    "1,Toy Story again (1995),Comedy",  # 11: duplicate
    "7,Amélie (2001),Comedy|Romance",  # 12
]
RATING_LINES = [
    "userId,movieId,rating,timestamp",  # 1
    "1,1,4.0,964982703",  # 2
    "1,2,0.5,964981247",  # 3
    "1,1,3.5,964982800",  # 4: same pair again: kept (ExampleGen deduplicates)
    "2,7,5.0,1445714835",  # 5
    "2,3,six,1445714835",  # 6: bad_rating
    "2,3,nan,1445714835",  # 7: bad_rating
    "2,3,5.5,1445714835",  # 8: bad_rating
    "2,3,0.0,1445714835",  # 9: bad_rating
    "2,3,,1445714835",  # 10: bad_rating
    "u2,3,4.0,1445714835",  # 11: bad_value
    "2,3,4.0,yesterday",  # 12: bad_value
    "2,99,4.0,1445714835",  # 13: unknown_movie
    "9,3,4.0,1445714835",  # 14: unknown_user
    "2,3,4.0",  # 15: field_count
    '2,3,"4.0,1445714835',  # 16: malformed
    ",,,",  # 17: blank_line
    "  ",  # 18: blank_line
]


def _write(path, lines, encoding="utf-8", ending="\n", bom=False):
    text = "".join(line + ending for line in lines)
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode(encoding))
    return path


@pytest.fixture
def source(tmp_path):
    _write(tmp_path / "movies.csv", MOVIE_LINES, ending="\r\n", bom=True)
    _write(tmp_path / "ratings.csv", RATING_LINES)
    return MovieLensLatestSource(tmp_path)


def test_read_movies_parses_titles_genres_years_and_rejects(source):
    rejects = []
    movies = source.read_movies(rejects)
    assert movies == {
        "1": Movie("1", "Toy Story (1995)", ("Adventure", "Animation", "Children"), 1995),
        "2": Movie("2", "American President, The (1995)", ("Comedy", "Drama", "Romance"), 1995),
        "3": Movie("3", 'Movie "Quoted" Title, A (2001)', (), 2001),
        "4": Movie("4", "No Year Movie", ("Drama",), 0),
        "7": Movie("7", "Amélie (2001)", ("Comedy", "Romance"), 2001),
    }
    assert list(movies) == ["1", "2", "3", "4", "7"]
    assert rejects == [
        Reject("movies.csv", 6, MALFORMED, MOVIE_LINES[5]),
        Reject("movies.csv", 7, BAD_VALUE, MOVIE_LINES[6]),
        Reject("movies.csv", 8, FIELD_COUNT, MOVIE_LINES[7]),
        Reject("movies.csv", 9, BLANK_LINE, ",,"),
        Reject("movies.csv", 10, BLANK_LINE, ""),
        Reject("movies.csv", 11, DUPLICATE, MOVIE_LINES[10]),
    ]


def test_read_ratings_every_row_in_order(source):
    movies = source.read_movies([])
    users = {"1": User("1", 0, "", ""), "2": User("2", 0, "", "")}
    (shard,) = source.rating_shards()
    assert shard.name == "ratings.csv"
    records = list(source.read_ratings(shard, movies, users))

    def reject(number, reason):
        return Reject("ratings.csv", number, reason, RATING_LINES[number - 1])

    assert records == [
        Rating("1", "1", 4.0, 964982703),
        Rating("1", "2", 0.5, 964981247),
        Rating("1", "1", 3.5, 964982800),
        Rating("2", "7", 5.0, 1445714835),
        *(reject(n, BAD_RATING) for n in (6, 7, 8, 9, 10)),
        reject(11, BAD_VALUE),
        reject(12, BAD_VALUE),
        reject(13, UNKNOWN_MOVIE),
        reject(14, UNKNOWN_USER),
        reject(15, FIELD_COUNT),
        reject(16, MALFORMED),
        reject(17, BLANK_LINE),
        reject(18, BLANK_LINE),
    ]
    # Line numbers and raw text travel with ratings too (ExampleGen reports duplicates).
    assert [(r.line_number, r.raw_line) for r in records[:4]] == [
        (n, RATING_LINES[n - 1]) for n in (2, 3, 4, 5)
    ]


def test_without_catalogue_nothing_is_unknown(source):
    (shard,) = source.rating_shards()
    records = list(source.read_ratings(shard, None, None))
    assert records[11:13] == [Rating("2", "99", 4.0, 1445714835), Rating("9", "3", 4.0, 1445714835)]


def test_columns_found_by_name_in_any_order_and_case(tmp_path):
    _write(tmp_path / "movies.csv", ["Title,MOVIEID", '"Heat (1995)",6'])
    _write(tmp_path / "ratings.csv", ["timestamp,rating,movieId,userId", "100,3.5,6,42"])
    source = MovieLensLatestSource(tmp_path, name="mine")
    assert source.read_movies([]) == {"6": Movie("6", "Heat (1995)", (), 1995)}
    (shard,) = source.rating_shards()
    assert list(source.read_ratings(shard, None, None)) == [Rating("42", "6", 3.5, 100)]
    assert source.describe() == {"name": "mine", "kind": "movielens-latest", "path": str(tmp_path)}


@pytest.mark.parametrize("bom", [False, True])
def test_latin1_file_is_read_as_latin1(tmp_path, bom):
    # With a BOM too: a tool added one to a file that is not UTF-8 after all.
    lines = ["movieId,title", '1,"Misérables, Les (1995)"']
    _write(tmp_path / "movies.csv", lines, "latin-1", bom=bom)
    assert MovieLensLatestSource(tmp_path).read_movies([]) == {
        "1": Movie("1", "Misérables, Les (1995)", (), 1995)
    }


def test_probe_reads_the_whole_file(tmp_path):
    # The only non-UTF-8 byte sits past the first probe chunk.
    path = tmp_path / "ratings.csv"
    ascii_rows = b"1,1,4.0,100\n" * 200_000  # 2.4 MB
    path.write_bytes(b"userId,movieId,rating,timestamp\n" + ascii_rows + b"1,\xe9,4.0,100\n")
    assert delimited.probe_encoding(path) == delimited.LATIN1
    path.write_bytes(b"userId,movieId,rating,timestamp\n" + ascii_rows + "1,é\n".encode())
    assert delimited.probe_encoding(path) == delimited.UTF8


def test_missing_column_or_file_names_them(tmp_path):
    _write(tmp_path / "ratings.csv", ["userId,movieId,rating", "1,1,4.0"])
    source = MovieLensLatestSource(tmp_path)
    with pytest.raises(ValueError, match=r"ratings.csv has no column 'timestamp'"):
        source.rating_shards()
    with pytest.raises(ValueError, match=r"movies.csv is missing"):
        source.read_movies([])
    _write(tmp_path / "movies.csv", ["movieId,name", "1,A"])
    with pytest.raises(ValueError, match=r"movies.csv has no column 'title'"):
        source.read_movies([])


def test_files_without_a_valid_row_raise(tmp_path):
    _write(tmp_path / "movies.csv", ["movieId,title,genres", ",,", "x,A,B"])
    _write(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp", "1,1,9,1"])
    source = MovieLensLatestSource(tmp_path)
    with pytest.raises(ValueError, match="movies.csv has no valid movie line"):
        source.read_movies([])
    (shard,) = source.rating_shards()
    records = source.read_ratings(shard, None, None)
    assert next(records) == Reject("ratings.csv", 2, BAD_RATING, "1,1,9,1")
    with pytest.raises(ValueError, match="ratings.csv has no valid rating line"):
        next(records)


def test_plain_row_shortcut_agrees_with_the_general_path(tmp_path):
    # Lines near the edges of the regex that skips parsing; the general path is the reference.
    lines = [
        "1,2,4.5,100",
        " 1 ,\t2\t,4.5, 100 ",
        "1,2,4.5,-100",
        "1,2, 4.5 ,100",
        "1,2,4.5,1e3",
        "1,2,4.5,",
        "1,2,4.5,+100",
        "1,-2,4.5,100",
        "1,2,,100",
        "1,2,4.5,100,",
        '1,2,"4.5",100',
        "١,2,4.5,100",  # an Arabic-Indic digit: not an id
        "1,2,4.5,100\x0b",
        "1;2;4.5;100",
    ]
    path = _write(tmp_path / "ratings.csv", ["userId,movieId,rating,timestamp", *lines])
    table = delimited.DelimitedFile.open(path)
    plain = delimited.RatingColumns(0, 1, 2, 3, delimited.int_id, delimited.unix_seconds, 0.5, 5)
    general = delimited.RatingColumns(
        0, 1, 2, 3, lambda t: delimited.int_id(t), delimited.unix_seconds, 0.5, 5
    )
    assert delimited._plain_row(4, ",", plain) is not None
    assert delimited._plain_row(4, ",", general) is None
    fast = list(delimited.read_rating_rows(table, plain, None, None))
    slow = list(delimited.read_rating_rows(table, general, None, None))
    assert fast == slow
    assert [(r.line_number, r.raw_line) for r in fast] == [
        (n, lines[n - 2]) for n in range(2, len(lines) + 2)
    ]
    assert fast[:4] == [
        Rating("1", "2", 4.5, 100),
        Rating("1", "2", 4.5, 100),
        Rating("1", "2", 4.5, -100),
        Rating("1", "2", 4.5, 100),
    ]
    ok = Rating("1", "2", 4.5, 100)
    assert [r.reason if isinstance(r, Reject) else r for r in fast[4:]] == [
        BAD_VALUE,  # 1e3
        BAD_VALUE,  # no time
        BAD_VALUE,  # +100
        BAD_VALUE,  # -2
        BAD_RATING,
        FIELD_COUNT,
        ok,  # quoted: the csv module reads it
        BAD_VALUE,
        ok,  # str.strip() drops the vertical tab, as int() would
        FIELD_COUNT,
    ]
