"""Delimited text files (CSV, TSV) read one physical line at a time, for the CSV sources.

``latest``, ``netflix`` and ``table`` open their files through :class:`DelimitedFile` and
turn its rows into records with the field parsers below. Each record is one physical line:
a malformed line (an unbalanced quote, say) is one ``malformed`` reject and reading goes on
with the next line, instead of the csv module swallowing the rest of the file into one field.
The price: a quoted field holding a line break is not supported (its lines are rejected).
"""

import codecs
import csv
import dataclasses
import datetime
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping

from data import fileio
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
)
from data.sources.base import Shard

UTF8 = "utf-8-sig"  # UTF-8 that drops a leading byte-order mark
LATIN1 = "latin-1"
_PROBE_BYTES = 1 << 20
# A UTF-8 byte-order mark as it reads when the file is decoded as latin-1.
_LATIN1_BOM = codecs.BOM_UTF8.decode(LATIN1)
_NULLS = frozenset({"", "null", "nan", "none", "na", "n/a"})
# Fractions of a second beyond what datetime.fromisoformat takes in Python 3.10.
_FRACTION = re.compile(r"(\d\d:\d\d:\d\d)\.\d+")


def probe_encoding(path: str | os.PathLike) -> str:
    """``UTF8`` if the whole file is valid UTF-8, else ``LATIN1`` (which decodes any byte).

    Reads the file once, in chunks, before it is parsed: deciding per line would decode a
    file that is mostly ASCII with a few latin-1 titles two ways.
    """
    decoder = codecs.getincrementaldecoder("utf-8")()
    with fileio.open_binary(path) as f:
        try:
            while chunk := f.read(_PROBE_BYTES):
                decoder.decode(chunk)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return LATIN1
    return UTF8


def _split_quoted(line: str, delimiter: str) -> list[str] | None:
    """The fields of one line with quotes, per the csv module; None if it cannot parse it."""
    try:
        return next(csv.reader((line,), delimiter=delimiter, strict=True), [])
    except csv.Error:
        return None


@dataclasses.dataclass(frozen=True)
class DelimitedFile:
    """A delimited text file whose first line names its columns.

    Attributes:
      path: the file.
      delimiter: one character, e.g. ``","``.
      encoding: ``UTF8`` or ``LATIN1``; :meth:`open` probes the file when not given.
    """

    path: str
    delimiter: str
    encoding: str

    @classmethod
    def open(
        cls, path: str | os.PathLike, delimiter: str = ",", encoding: str | None = None
    ) -> "DelimitedFile":
        """The file at ``path``, its encoding probed unless given.

        Raises:
          ValueError: naming the file when it does not exist.
        """
        path = os.fspath(path)
        if not fileio.is_file(path):
            raise ValueError(f"{path} is missing")
        return cls(path, delimiter, encoding or probe_encoding(path))

    @property
    def name(self) -> str:
        """The base name, as rejects give it."""
        return os.path.basename(self.path)

    def _text(self):
        # newline="" keeps "\r\n" on each line so that raw lines and line numbers are physical.
        return fileio.open_text(self.path, self.encoding)

    def header(self) -> list[str]:
        """The column names of line 1, trimmed, without a byte-order mark."""
        with self._text() as f:
            line = f.readline().rstrip("\r\n")
        if line.startswith(_LATIN1_BOM):
            line = line[len(_LATIN1_BOM) :]
        names = _split_quoted(line, self.delimiter) or []
        return [name.strip().lstrip("\ufeff").strip() for name in names]

    def columns(
        self, required: Mapping[str, str], optional: Mapping[str, str | None] | None = None
    ) -> dict[str, int | None]:
        """Positions of named columns: an exact name first, else a case-insensitive one.

        Args:
          required: key -> column name that must be in the header.
          optional: key -> column name (or None) that may be absent.

        Returns:
          key -> 0-based position; None for an absent optional column.

        Raises:
          ValueError: naming the file, the column and the header when a required one is
            missing.
        """
        header = self.header()
        folded = [name.casefold() for name in header]

        def find(name: str) -> int | None:
            name = name.strip()
            if name in header:
                return header.index(name)
            if name.casefold() in folded:
                return folded.index(name.casefold())
            return None

        found = {}
        for key, name in required.items():
            found[key] = find(name)
            if found[key] is None:
                raise ValueError(
                    f"{self.path} has no column {name!r} (its header line 1 names {header})"
                )
        for key, name in (optional or {}).items():
            found[key] = None if name is None else find(name)
        return found

    def rows(self, merge_extra_into_last: bool = False) -> Iterator[tuple[int, str, list | str]]:
        """Every line after the header, as ``(line number, raw line, fields or reason)``.

        The reason (a ``movielens`` reject reason) replaces the fields of a line that is blank
        or only empty fields, that the csv module cannot parse, or that has another number of
        fields than the header.

        Args:
          merge_extra_into_last: join surplus fields back into the last column, for files
            whose last column is free text written without quotes (Netflix titles).

        Yields:
          ``(number, line, fields)``: the 1-based physical line number (the header is line
          1), the line without its ending, and its fields (untrimmed) or the reject reason.
        """
        width = len(self.header())
        for number, line in self.lines():
            yield number, line, self.split(line, width, merge_extra_into_last)

    def lines(self) -> Iterator[tuple[int, str]]:
        """``(number, line)`` of every line after the header, without its line ending."""
        with self._text() as f:
            f.readline()
            for number, line in enumerate(f, start=2):
                yield number, line.rstrip("\r\n")

    def split(self, line: str, width: int, merge_extra_into_last: bool = False) -> list | str:
        """One line's fields, or the reason it has none; see :meth:`rows`."""
        delimiter = self.delimiter
        if not line.strip(delimiter + " \t"):
            return BLANK_LINE
        if '"' in line:
            fields = _split_quoted(line, delimiter)
            if fields is None:
                return MALFORMED
            if not any(field.strip() for field in fields):
                return BLANK_LINE
        else:
            fields = line.split(delimiter)
        if len(fields) != width:
            if not (merge_extra_into_last and len(fields) > width):
                return FIELD_COUNT
            fields[width - 1 :] = [delimiter.join(fields[width - 1 :])]
        return fields


def int_id(text: str) -> str | None:
    """A decimal id without sign or spaces around it, e.g. ``" 42"`` -> ``"42"``; else None."""
    text = text.strip()
    return text if text.isdigit() and text.isascii() else None


def any_id(text: str) -> str | None:
    """Any non-empty id, trimmed; None when empty."""
    return text.strip() or None


def rating_value(text, low: float, high: float) -> float | None:
    """A number in ``[low, high]`` (text or number); None when not a number, NaN or outside."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if low <= value <= high else None  # NaN fails both comparisons


def year_value(text: str) -> int | None:
    """A year such as ``"1995"`` or ``"1995.0"``; 0 when missing (empty, NULL, NaN); else None."""
    text = text.strip()
    if text.casefold() in _NULLS:
        return 0
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() and value >= 0 else None


def unix_seconds(text: str) -> int | None:
    """Integer Unix seconds such as ``"881250949"``; None otherwise."""
    text = text.strip()
    digits = text[1:] if text.startswith("-") else text
    return int(text) if digits.isdigit() and digits.isascii() else None


def timestamp_value(value) -> int | None:
    """Unix seconds from an int, an integral float, a datetime/date or an ISO 8601 string.

    Datetimes without a time zone are taken as UTC, dates as midnight UTC.

    Args:
      value: ``"881250949"``, ``"2001-09-09"``, ``"2001-09-09 01:46:40"``,
        ``"2001-09-09T01:46:40Z"``, ``datetime``/``date`` objects, ints or floats.

    Returns:
      seconds since 1970-01-01 UTC, or None when ``value`` is none of those.
    """
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) and value.is_integer() else None
    if isinstance(value, datetime.datetime):
        moment = value
    elif isinstance(value, datetime.date):
        moment = datetime.datetime(value.year, value.month, value.day)
    else:
        text = str(value).strip()
        seconds = unix_seconds(text)
        if seconds is not None:
            return seconds
        number = rating_value(text, -math.inf, math.inf)
        if number is not None:
            return timestamp_value(number)
        if text[-1:] in ("Z", "z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.datetime.fromisoformat(_FRACTION.sub(r"\1", text))
        except ValueError:
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return math.floor(moment.timestamp())


@dataclasses.dataclass(frozen=True)
class RatingColumns:
    """Where the fields of a rating are in a row, and how to read them.

    Attributes:
      user, movie, rating: 0-based positions.
      timestamp: 0-based position, or None when the file has no timestamps (then 0).
      parse_id: :func:`int_id` or :func:`any_id`.
      parse_timestamp: :func:`unix_seconds` or :func:`timestamp_value`.
      min_rating, max_rating: the valid range, inclusive.
    """

    user: int
    movie: int
    rating: int
    timestamp: int | None
    parse_id: Callable[[str], str | None]
    parse_timestamp: Callable[[str], int | None]
    min_rating: float
    max_rating: float


def rating_record(
    file: str,
    number: int,
    raw: str,
    user: str | None,
    movie: str | None,
    rating,
    timestamp: int | None,
    low: float,
    high: float,
    movies: Mapping | None,
    users: Mapping | None,
) -> Rating | Reject:
    """One parsed row as a Rating, or the Reject of the first check it fails: ids and
    timestamp parsed (``bad_value``; None means unparseable), rating in [low, high]
    (``bad_rating``), movie and user known (``unknown_movie``, ``unknown_user``; no check
    when the mapping is None). CSV and Parquet tables share it."""
    if user is None or movie is None or timestamp is None:
        return Reject(file, number, BAD_VALUE, raw)
    value = rating_value(rating, low, high)
    if value is None:
        return Reject(file, number, BAD_RATING, raw)
    if movies is not None and movie not in movies:
        return Reject(file, number, UNKNOWN_MOVIE, raw)
    if users is not None and user not in users:
        return Reject(file, number, UNKNOWN_USER, raw)
    return Rating(user, movie, value, timestamp, line_number=number, raw_line=raw)


def read_rating_rows(
    table: DelimitedFile,
    columns: RatingColumns,
    movies: Mapping | None,
    users: Mapping | None,
) -> Iterator[Rating | Reject]:
    """Streams a ratings file: a Rating or a Reject per line after the header.

    Checks, in order: the row's shape (see :meth:`DelimitedFile.rows`), ids and timestamp
    (``bad_value``), rating (``bad_rating``), movie and user known (``unknown_movie``,
    ``unknown_user``; skipped when the mapping is None).

    Raises:
      ValueError: naming the file, after its last line, when no line was a valid rating.
    """
    file, width = table.name, len(table.header())
    parse_id, parse_time = columns.parse_id, columns.parse_timestamp
    low, high = columns.min_rating, columns.max_rating
    fast = _plain_row(width, table.delimiter, columns)
    valid = 0
    for number, line in table.lines():
        match = fast.fullmatch(line) if fast else None
        if match is not None:
            user, movie, rating = match.group("user", "movie", "rating")
            timestamp = 0 if columns.timestamp is None else int(match.group("time"))
        else:
            fields = table.split(line, width)
            if isinstance(fields, str):
                yield Reject(file, number, fields, line)
                continue
            user, movie = parse_id(fields[columns.user]), parse_id(fields[columns.movie])
            timestamp = 0 if columns.timestamp is None else parse_time(fields[columns.timestamp])
            rating = fields[columns.rating]
        record = rating_record(
            file, number, line, user, movie, rating, timestamp, low, high, movies, users
        )
        valid += isinstance(record, Rating)
        yield record
    if not valid:
        raise ValueError(f"{table.path} has no valid rating line")


def _plain_row(width: int, delimiter: str, columns: RatingColumns) -> re.Pattern | None:
    """A regex for the usual row of integer ids and times, whose match needs no other check.

    It matches only lines that :meth:`DelimitedFile.split`, :func:`int_id` and
    :func:`unix_seconds` would accept as they are (no quotes, ``width`` fields, digits), so
    the other lines take the general path and its rejects. None when the ids or times are
    not integers.
    """
    if columns.parse_id is not int_id or columns.parse_timestamp is not unix_seconds:
        return None
    separator = re.escape(delimiter)
    fields = [f'[^{separator}"]*'] * width
    fields[columns.user] = "[ \t]*(?P<user>[0-9]+)[ \t]*"
    fields[columns.movie] = "[ \t]*(?P<movie>[0-9]+)[ \t]*"
    fields[columns.rating] = f'(?P<rating>[^{separator}"]*)'
    if columns.timestamp is not None:
        fields[columns.timestamp] = "[ \t]*(?P<time>-?[0-9]+)[ \t]*"
    return re.compile(separator.join(fields))


def read_catalogue(
    table: DelimitedFile,
    parse: Callable[[list[str]], Movie | None],
    rejects: list[Reject],
    merge_extra_into_last: bool = False,
) -> dict[str, Movie]:
    """Reads a movies file: movie id -> Movie, in file order; the first row of an id wins.

    Args:
      table: the file.
      parse: a row's fields -> its Movie, or None when a value is bad (``bad_value``).
      rejects: every other line is appended here, with its reason.
      merge_extra_into_last: as for :meth:`DelimitedFile.rows`.

    Raises:
      ValueError: naming the file when no line is a valid movie.
    """
    movies: dict[str, Movie] = {}
    for number, line, fields in table.rows(merge_extra_into_last):
        if isinstance(fields, str):
            reason = fields
        else:
            movie = parse(fields)
            if movie is None:
                reason = BAD_VALUE
            elif movie.movie_id in movies:
                reason = DUPLICATE
            else:
                movies[movie.movie_id] = movie
                continue
        rejects.append(Reject(table.name, number, reason, line))
    if not movies:
        raise ValueError(f"{table.path} has no valid movie line")
    return movies


def ratings_file_shard(path: str, columns: Mapping[str, str]) -> Shard:
    """The one shard of a headed ratings CSV, checked for its ``columns`` up front."""
    table = DelimitedFile.open(path)
    table.columns(columns)
    return Shard(table.name, {"path": table.path, "encoding": table.encoding})


def read_ratings_file(
    shard_spec: Mapping,
    columns: Mapping[str, str],
    min_rating: float,
    max_rating: float,
    movies: Mapping[str, Movie] | None,
    users: Mapping | None,
) -> Iterator[Rating | Reject]:
    """Streams a shard of :func:`ratings_file_shard` with integer ids and, when ``columns``
    has ``"time"``, Unix-second timestamps (MovieLens latest and Netflix files)."""
    table = DelimitedFile.open(shard_spec["path"], encoding=shard_spec["encoding"])
    at = table.columns(columns)
    rating_columns = RatingColumns(
        user=at["user"],
        movie=at["movie"],
        rating=at["rating"],
        timestamp=at.get("time"),
        parse_id=int_id,
        parse_timestamp=unix_seconds,
        min_rating=min_rating,
        max_rating=max_rating,
    )
    return read_rating_rows(table, rating_columns, movies, users)
