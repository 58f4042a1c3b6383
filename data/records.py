"""Readers of the MovieLens 100k files, and the rule that deduplicates ratings.

Plain Python, no TensorFlow: ``data.sources.ml100k`` reads the ml-100k files with these for
ExampleGen (``data.examples``), whose Beam half (``data.ingest.Deduplicate``) keeps one rating
per pair by :func:`latest_per_pair`; ``bench`` and tests read u.data with :func:`iter_ratings`,
which applies the same rule. Malformed input is never dropped silently: every line that does
not become a record comes back as a :class:`Reject` saying why.
"""

import dataclasses
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TypeVar

from data import fileio

# u.genre, in the order of u.item's 19 flags. "unknown" means "no genre known", so that flag
# adds nothing to a movie's genres.
GENRE_NAMES = (
    "unknown",
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
_NO_GENRE = "unknown"
_ITEM_FIELDS = 5 + len(GENRE_NAMES)
_USER_FIELDS = 5
_RATING_FIELDS = 4
MIN_RATING, MAX_RATING = 1.0, 5.0

# Why a line was rejected; each is counted separately by ExampleGen.
BLANK_LINE = "blank_line"
FIELD_COUNT = "field_count"
BAD_VALUE = "bad_value"  # a non-integer id, timestamp or age, a bad date or genre flag
BAD_RATING = "bad_rating"  # not a number, or outside [MIN_RATING, MAX_RATING]
UNKNOWN_MOVIE = "unknown_movie"
UNKNOWN_USER = "unknown_user"
DUPLICATE = "duplicate"  # a repeated movie/user id, or an older rating of the same pair
MALFORMED = "malformed"  # CSV sources: a line the csv module cannot parse (e.g. a stray quote)
REJECT_REASONS = (
    BLANK_LINE,
    FIELD_COUNT,
    BAD_VALUE,
    BAD_RATING,
    UNKNOWN_MOVIE,
    UNKNOWN_USER,
    DUPLICATE,
    MALFORMED,
)

# The ml-100k files are latin-1 (titles such as "Misérables, Les (1995)").
ENCODING = "latin-1"

_ID = re.compile(r"^\d+$")
_RELEASE_DATE = re.compile(r"^\d{1,2}-[A-Za-z]{3}-(\d{4})$")  # 01-Jan-1995
_TITLE_YEAR = re.compile(r"\((\d{4})\)\s*$")  # Toy Story (1995)


@dataclasses.dataclass(frozen=True)
class Movie:
    """One row of u.item."""

    movie_id: str
    title: str
    genres: tuple[str, ...]
    release_year: int  # 0 when unknown


@dataclasses.dataclass(frozen=True)
class User:
    """One row of u.user."""

    user_id: str
    age: int  # 0 when unknown
    gender: str
    occupation: str


@dataclasses.dataclass(frozen=True)
class Rating:
    """One row of u.data."""

    user_id: str
    movie_id: str
    rating: float
    timestamp: int  # Unix seconds
    # 1-based physical line (or row) number in its file; deduplication breaks timestamp ties
    # by it (see latest_per_pair) and duplicate rejects name it. Not part of a rating's
    # identity.
    line_number: int = dataclasses.field(default=0, compare=False)
    # The row as read (without its line ending), written to rejects.csv if it is a duplicate.
    raw_line: str = dataclasses.field(default="", compare=False, repr=False)


@dataclasses.dataclass(frozen=True)
class Reject:
    """A line that did not become a record.

    Attributes:
      file: the file's base name, e.g. ``"u.data"``.
      line_number: 1-based line number in that file (a Parquet table: its row number).
      reason: one of ``REJECT_REASONS``.
      raw_line: the line without its line ending (a Parquet table: the row's values).
    """

    file: str
    line_number: int
    reason: str
    raw_line: str


class MalformedLineError(ValueError):
    """Raised by the strict readers on the first line they cannot use."""

    def __init__(self, reject: Reject):
        super().__init__(
            f"{reject.file} line {reject.line_number}: {reject.reason}: {reject.raw_line!r}"
        )
        self.reject = reject


def _raise(reject: Reject) -> None:
    raise MalformedLineError(reject)


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(1-based line number, line without its ending), read one at a time."""
    with fileio.open_text(path, ENCODING) as f:
        for number, line in enumerate(f, start=1):
            yield number, line.rstrip("\r\n")


def _fields(file: str, number: int, line: str, sep: str, count: int) -> list[str] | Reject:
    if not line.strip():
        return Reject(file, number, BLANK_LINE, line)
    fields = [f.strip() for f in line.split(sep)]
    if len(fields) != count:
        return Reject(file, number, FIELD_COUNT, line)
    return fields


def _parse_movie(file: str, number: int, line: str) -> Movie | Reject:
    fields = _fields(file, number, line, "|", _ITEM_FIELDS)
    if isinstance(fields, Reject):
        return fields
    movie_id, title, release_date = fields[:3]
    flags = fields[5:]
    if not _ID.match(movie_id) or any(f not in ("0", "1") for f in flags):
        return Reject(file, number, BAD_VALUE, line)
    if release_date:
        date = _RELEASE_DATE.match(release_date)
        if not date:
            return Reject(file, number, BAD_VALUE, line)
        year = int(date.group(1))
    else:
        year = year_in_title(title)
    genres = tuple(
        name
        for name, flag in zip(GENRE_NAMES, flags, strict=True)
        if flag == "1" and name != _NO_GENRE
    )
    return Movie(movie_id=movie_id, title=title, genres=genres, release_year=year)


def year_in_title(title: str) -> int:
    """The year of a title ending in "(1995)", as MovieLens writes them; 0 when there is none."""
    match = _TITLE_YEAR.search(title)
    return int(match.group(1)) if match else 0


def _parse_user(file: str, number: int, line: str) -> User | Reject:
    fields = _fields(file, number, line, "|", _USER_FIELDS)
    if isinstance(fields, Reject):
        return fields
    user_id, age, gender, occupation, _zip_code = fields
    if not _ID.match(user_id) or (age and not _ID.match(age)):
        return Reject(file, number, BAD_VALUE, line)
    return User(user_id=user_id, age=int(age or 0), gender=gender, occupation=occupation)


_Record = TypeVar("_Record", Movie, User)


def _read_keyed(
    path: str | os.PathLike,
    parse: Callable[[str, int, str], _Record | Reject],
    key: Callable[[_Record], str],
    rejects: list[Reject] | None,
) -> dict[str, _Record]:
    """Parses every line; the first record of an id wins, later ones are duplicates."""
    file = os.path.basename(path)
    on_reject = _raise if rejects is None else rejects.append
    records = {}
    for number, line in _lines(path):
        record = parse(file, number, line)
        if not isinstance(record, Reject) and key(record) in records:
            record = Reject(file, number, DUPLICATE, line)
        if isinstance(record, Reject):
            on_reject(record)
        else:
            records[key(record)] = record
    return records


def read_movies(path: str | os.PathLike, rejects: list[Reject] | None = None) -> dict[str, Movie]:
    """Reads u.item.

    Args:
      path: the u.item file (``|``-separated, latin-1).
      rejects: malformed lines are appended here; when None, the first one raises.

    Returns:
      movie id -> Movie, in file order. Keyed by id: ml-100k has 1682 movies but 1664 titles.

    Raises:
      MalformedLineError: (a ValueError) on a malformed line when ``rejects`` is None.
    """
    return _read_keyed(path, _parse_movie, lambda m: m.movie_id, rejects)


def read_users(path: str | os.PathLike, rejects: list[Reject] | None = None) -> dict[str, User]:
    """Reads u.user.

    Args:
      path: the u.user file (``|``-separated).
      rejects: malformed lines are appended here; when None, the first one raises.

    Returns:
      user id -> User, in file order.

    Raises:
      MalformedLineError: (a ValueError) on a malformed line when ``rejects`` is None.
    """
    return _read_keyed(path, _parse_user, lambda u: u.user_id, rejects)


def _parse_rating(
    file: str,
    number: int,
    line: str,
    movies: Mapping[str, Movie] | None,
    users: Mapping[str, User] | None,
) -> Rating | Reject:
    fields = _fields(file, number, line, "\t", _RATING_FIELDS)
    if isinstance(fields, Reject):
        return fields
    user_id, movie_id, rating, timestamp = fields
    if not (_ID.match(user_id) and _ID.match(movie_id) and _ID.match(timestamp)):
        return Reject(file, number, BAD_VALUE, line)
    try:
        value = float(rating)
    except ValueError:
        return Reject(file, number, BAD_RATING, line)
    if math.isnan(value) or not MIN_RATING <= value <= MAX_RATING:
        return Reject(file, number, BAD_RATING, line)
    if movies is not None and movie_id not in movies:
        return Reject(file, number, UNKNOWN_MOVIE, line)
    if users is not None and user_id not in users:
        return Reject(file, number, UNKNOWN_USER, line)
    return Rating(
        user_id=user_id,
        movie_id=movie_id,
        rating=value,
        timestamp=int(timestamp),
        line_number=number,
        raw_line=line,
    )


def parse_ratings(
    path: str | os.PathLike,
    movies: Mapping[str, Movie] | None = None,
    users: Mapping[str, User] | None = None,
) -> Iterator[Rating | Reject]:
    """Streams u.data as written, one record per line, without deduplication.

    Args:
      path, movies, users: as for ``iter_ratings``.

    Yields:
      a Rating for each valid line (every rating of a pair rated more than once), a Reject
      for every other line.
    """
    file = os.path.basename(path)
    for number, line in _lines(path):
        yield _parse_rating(file, number, line, movies, users)


def iter_ratings(
    path: str | os.PathLike,
    movies: Mapping[str, Movie] | None = None,
    users: Mapping[str, User] | None = None,
) -> Iterator[Rating | Reject]:
    """Streams u.data, one record per line, in file order, deduplicated as ExampleGen does.

    The file is read twice: once to find, by :func:`latest_per_pair` (u.data is shard 0),
    the rating kept of every (user, movie) pair, and once to yield. Memory holds one entry per
    kept pair only.

    Args:
      path: the u.data file (TAB-separated user id, item id, rating, Unix timestamp).
      movies: known movies; a rating of any other movie id is rejected. None: no check.
      users: known users; a rating by any other user id is rejected. None: no check.

    Yields:
      a Rating for each line kept, a Reject (with one of ``REJECT_REASONS``) for every other
      line, including the other ratings of a pair rated more than once (``DUPLICATE``).
    """
    ratings = (r for r in parse_ratings(path, movies, users) if isinstance(r, Rating))
    rows = ((r.user_id, r.movie_id, r.timestamp, 0, r.line_number) for r in ratings)
    kept = set(latest_per_pair(rows).values())
    file = os.path.basename(path)
    position = 0  # of the Rating among the file's ratings, as latest_per_pair counts them
    for record in parse_ratings(path, movies, users):
        if isinstance(record, Rating):
            if position not in kept:
                record = Reject(file, record.line_number, DUPLICATE, record.raw_line)
            position += 1
        yield record


_Pair = tuple[str, str]  # (user id, movie id)


def latest_per_pair(rows: Iterable[tuple[str, str, int, int, int]]) -> dict[_Pair, int]:
    """The deduplication rule: which rating of a pair rated more than once is kept.

    This is the one rule, for ExampleGen (``data.ingest.Deduplicate``, per user bucket) and
    :func:`iter_ratings` alike. Per (user, movie) pair the rating kept is the latest, the one
    with the highest (timestamp, shard, line): on equal timestamps the row read later wins,
    that is the later shard in the source's order (``Source.rating_shards``; with spans, the
    later span), then the later line of that shard. A (shard, line) names one row, so no
    further tie is possible. Every other rating of the pair is a ``DUPLICATE`` reject.

    Args:
      rows: (user id, movie id, timestamp, shard index, line number) of every valid rating,
        in any order.

    Returns:
      pair -> the 0-based position in ``rows`` of its rating kept.
    """
    latest: dict[_Pair, tuple[tuple[int, int, int], int]] = {}
    for position, (user_id, movie_id, timestamp, shard, line) in enumerate(rows):
        pair, rank = (user_id, movie_id), (timestamp, shard, line)
        held = latest.get(pair)
        if held is None or rank > held[0]:
            latest[pair] = (rank, position)
    return {pair: position for pair, (_, position) in latest.items()}
