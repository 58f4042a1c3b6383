"""Any ratings table, CSV or Parquet, as a pandas user would bring it.

:class:`TableSource` is the source of kind ``"table"`` in ``data.sources.registry``, built
from a :class:`~data.sources.spec.TableSpec`. A table written with
``df.to_csv(path, index=False)`` or ``df.to_parquet(path)`` works as is: name its user, item
and rating columns (and optionally timestamp and title) in
:class:`~data.sources.spec.TableColumns`.
"""

import os
from collections.abc import Iterator, Mapping

import data.sources.delimited as delimited
from data import fileio
from data.records import Movie, Rating, Reject, User, year_in_title
from data.sources.base import Shard, Source
from data.sources.spec import TABLE_RATING_RANGE, TableColumns, TableSpec, table_format

_BATCH_ROWS = 1 << 16
# Parquet row groups are gathered into shards of at least this many rows.
_SHARD_ROWS = 1 << 20
_UNIT_SECONDS = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}


def _pyarrow_parquet():
    try:
        import pyarrow.parquet
    except ImportError as e:  # pyarrow comes with apache-beam; say so if it is missing
        raise ImportError("pip install pyarrow to read Parquet tables") from e
    return pyarrow.parquet


class TableSource(Source):
    """One ratings table: a row per rating; the catalogue is the table's distinct items.

    CSV (``df.to_csv(index=False)``): a header line naming the columns, one record per line.
    The file is decoded as UTF-8 (a byte-order mark is dropped) unless a probe of the whole
    file finds bytes that are not UTF-8: then the whole file is read as latin-1. Rejects give
    physical line numbers (the header is line 1) and the line's text.

    Parquet (``df.to_parquet()``): read in batches of row groups, only the mapped columns.
    A row's number is its 1-based row number; its raw text is its mapped values joined by
    commas in the order user, item, rating[, timestamp] (nulls empty, timestamps in seconds).

    Ids are kept as text (``12`` -> ``"12"``). Timestamps may be Unix seconds or ISO 8601
    dates/datetimes (time-zone-less ones are UTC); Parquet timestamp and date columns work too.
    Columns are found by exact name, else case-insensitively.
    """

    name = "table"

    def __init__(
        self,
        path: str | os.PathLike,
        columns: TableColumns,
        format: str | None = None,
        delimiter: str | None = None,
        min_rating: float = TABLE_RATING_RANGE[0],
        max_rating: float = TABLE_RATING_RANGE[1],
    ):
        """Args:
        path: the CSV or Parquet file.
        columns: which columns hold what.
        format: ``"csv"`` or ``"parquet"``; from the suffix of ``path`` when None.
        delimiter: CSV only; tab for ``.tsv`` files, else comma, when None.
        min_rating, max_rating: the valid range of ratings, inclusive.
        """
        self.path = os.fspath(path)
        self.columns = columns
        self.format = table_format(self.path, format)
        tsv = self.path.lower().endswith(".tsv")
        self.delimiter = delimiter or ("\t" if tsv else ",")
        self.min_rating, self.max_rating = float(min_rating), float(max_rating)
        self.has_timestamps = columns.timestamp is not None

    def _wanted(self) -> tuple[dict[str, str], dict[str, str | None]]:
        c = self.columns
        return (
            {"user": c.user, "item": c.item, "rating": c.rating},
            {"timestamp": c.timestamp, "title": c.title},
        )

    def _csv(self, encoding: str | None = None) -> tuple[delimited.DelimitedFile, dict]:
        table = delimited.DelimitedFile.open(self.path, self.delimiter, encoding)
        required, optional = self._wanted()
        at = table.columns(required, optional)
        for key in ("timestamp", "title"):
            if optional[key] is not None and at[key] is None:
                table.columns({key: optional[key]})  # raises, naming the file and column
        return table, at

    def _parquet_names(self, parquet_file) -> dict[str, str | None]:
        """key -> the Parquet column name it maps to (exact, else case-insensitive)."""
        names = parquet_file.schema_arrow.names
        folded = {name.casefold(): name for name in reversed(names)}
        required, optional = self._wanted()
        found = {}
        for key, name in {**required, **optional}.items():
            if name is None:
                found[key] = None
            elif name in names or name.casefold() in folded:
                found[key] = name if name in names else folded[name.casefold()]
            else:
                raise ValueError(f"{self.path} has no column {name!r} (its columns: {names})")
        return found

    def read_movies(self, rejects: list[Reject]) -> dict[str, Movie]:
        """The distinct items in first-seen order, in one streaming pass over the table.

        A movie's title is the first non-empty title of its rows (its id when there is none)
        and its year the title's trailing "(1995)", 0 when missing. Nothing is appended to
        ``rejects``: :meth:`read_ratings` reports every bad row.

        Raises:
          ValueError: naming the file and the item column when no row has an item.
        """
        titles: dict[str, str] = {}
        for item, title in self._items_and_titles():
            if item is None:
                continue
            if not titles.get(item) and title:
                titles[item] = title
            else:
                titles.setdefault(item, "")
        if not titles:
            raise ValueError(f"{self.path} has no valid row with an item in {self.columns.item!r}")
        return {
            item: Movie(item, title or item, (), year_in_title(title))
            for item, title in titles.items()
        }

    def _items_and_titles(self) -> Iterator[tuple[str | None, str]]:
        if self.format == "csv":
            table, at = self._csv()
            for _, _, fields in table.rows():
                if not isinstance(fields, str):
                    title = "" if at["title"] is None else fields[at["title"]].strip()
                    yield delimited.any_id(fields[at["item"]]), title
            return
        parquet_file = _parquet_file(self.path)
        found = self._parquet_names(parquet_file)
        names = list(dict.fromkeys(n for n in (found["item"], found["title"]) if n))
        for batch in parquet_file.iter_batches(_BATCH_ROWS, columns=names, use_threads=False):
            items = _python_values(batch.column(names.index(found["item"])))
            titles = (
                _python_values(batch.column(names.index(found["title"])))
                if found["title"]
                else [None] * len(items)
            )
            for item, title in zip(items, titles, strict=True):
                yield _value_id(item), "" if title is None else str(title).strip()

    def rating_shards(self) -> list[Shard]:
        """CSV: the file. Parquet: runs of whole row groups of at least ~1M rows each."""
        if self.format == "csv":
            table, _ = self._csv()
            return [Shard(table.name, {"path": self.path, "encoding": table.encoding})]
        parquet_file = _parquet_file(self.path)
        self._parquet_names(parquet_file)
        metadata = parquet_file.metadata
        if metadata.num_rows == 0:
            raise ValueError(f"{self.path} has no rows")
        shards, groups, first_row, rows = [], [], 0, 0
        for index in range(metadata.num_row_groups):
            groups.append(index)
            rows += metadata.row_group(index).num_rows
            if rows - first_row >= _SHARD_ROWS or index == metadata.num_row_groups - 1:
                name = f"{os.path.basename(self.path)}@rows{first_row + 1}-{rows}"
                shards.append(Shard(name, {"row_groups": groups, "first_row": first_row}))
                groups, first_row = [], rows
        return shards

    def read_ratings(
        self,
        shard: Shard,
        movies: Mapping[str, Movie] | None,
        users: Mapping[str, User] | None,
    ) -> Iterator[Rating | Reject]:
        """Streams one shard; a CSV file without a valid rating raises ValueError at its end."""
        if self.format == "csv":
            table, at = self._csv(shard.spec["encoding"])
            columns = delimited.RatingColumns(
                user=at["user"],
                movie=at["item"],
                rating=at["rating"],
                timestamp=at["timestamp"],
                parse_id=delimited.any_id,
                parse_timestamp=delimited.timestamp_value,
                min_rating=self.min_rating,
                max_rating=self.max_rating,
            )
            return delimited.read_rating_rows(table, columns, movies, users)
        return self._parquet_ratings(shard, movies, users)

    def _parquet_ratings(
        self,
        shard: Shard,
        movies: Mapping[str, Movie] | None,
        users: Mapping[str, User] | None,
    ) -> Iterator[Rating | Reject]:
        parquet_file = _parquet_file(self.path)
        found = self._parquet_names(parquet_file)
        keys = [k for k in ("user", "item", "rating", "timestamp") if found[k]]
        names = list(dict.fromkeys(found[k] for k in keys))
        file, number = os.path.basename(self.path), shard.spec["first_row"]
        low, high = self.min_rating, self.max_rating
        batches = parquet_file.iter_batches(
            _BATCH_ROWS, row_groups=shard.spec["row_groups"], columns=names, use_threads=False
        )
        for batch in batches:
            values = {key: _python_values(batch.column(names.index(found[key]))) for key in keys}
            # Whole-column conversions first: the per-row loop is what costs.
            texts = [["" if v is None else str(v) for v in values[key]] for key in keys]
            ids = {key: [_value_id(v) for v in values[key]] for key in ("user", "item")}
            stamps = (
                [delimited.timestamp_value(v) for v in values["timestamp"]]
                if found["timestamp"]
                else [0] * batch.num_rows
            )
            raws = map(",".join, zip(*texts, strict=True))
            rows = zip(ids["user"], ids["item"], values["rating"], stamps, raws, strict=True)
            for user, item, rating, timestamp, raw in rows:
                number += 1
                yield delimited.rating_record(
                    file, number, raw, user, item, rating, timestamp, low, high, movies, users
                )

    @classmethod
    def from_spec(cls, spec: TableSpec) -> "TableSource":
        return cls(
            spec.path,
            spec.columns,
            format=spec.format,
            delimiter=spec.delimiter,
            min_rating=spec.min_rating,
            max_rating=spec.max_rating,
        )

    def details(self) -> dict:
        return {"path": self.path, "format": self.format, "columns": self.columns.to_dict()}


def _value_id(value) -> str | None:
    """A Parquet value as an id: text, trimmed; None when null, NaN or empty."""
    if value.__class__ is str:
        return value.strip() or None
    if value is None or (isinstance(value, float) and value != value):
        return None
    return str(value).strip() or None


def _python_values(column) -> list:
    """A pyarrow column as Python values; timestamps and dates as Unix seconds."""
    import pyarrow as pa

    if pa.types.is_timestamp(column.type):
        per_second = _UNIT_SECONDS[column.type.unit]
        ticks = _to_list(column.cast(pa.int64()))
        return [None if t is None else t // per_second for t in ticks]
    if pa.types.is_date32(column.type):
        return [None if d is None else d * 86400 for d in _to_list(column.cast(pa.int32()))]
    return _to_list(column)


def _to_list(column) -> list:
    import pyarrow as pa

    # Through numpy when that keeps every value as it is (numbers without nulls, which numpy
    # would make NaN; text, whose nulls stay None): pyarrow's to_pylist is several times slower.
    text = pa.types.is_string(column.type) or pa.types.is_large_string(column.type)
    if text or (column.null_count == 0 and not pa.types.is_dictionary(column.type)):
        return column.to_numpy(zero_copy_only=False).tolist()
    return column.to_pylist()


def _parquet_file(path: str):
    """A ParquetFile; pyarrow opens local paths itself, remote ones come through fileio."""
    source = fileio.open_binary(path) if fileio.is_remote(path) else path
    return _pyarrow_parquet().ParquetFile(source)
