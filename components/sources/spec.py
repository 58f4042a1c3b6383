"""DatasetSpec: which dataset ExampleGen reads and how, as a frozen, JSON-round-tripping value.

``components.sources`` re-exports these names; runners build a spec once (from CLI flags or
``components.sources.dataset_spec``), ExampleGen takes its JSON as a parameter and calls
``components.sources.make_source``.
"""

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping

KINDS = ("ml-100k", "movielens-latest", "netflix", "table", "synthetic", "spans")
FORMATS = ("csv", "parquet")
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_TABLE_FIELDS = ("columns", "format", "delimiter", "min_rating", "max_rating")
_SYNTHETIC_FIELDS = ("num_users", "num_movies", "num_ratings", "seed", "num_clusters")
_SPANS_FIELDS = ("span_layout", "window", "spans")
# Spans: directories ``span-<n>`` under one root, each a dataset in one of these layouts.
SPAN_LAYOUTS = ("movielens-latest", "ml-100k")
SPAN_NAME = re.compile(r"span-([0-9]+)")
# What a synthetic spec gets for a field left out: about the size of MovieLens 100k.
SYNTHETIC_DEFAULTS = {
    "num_users": 1000,
    "num_movies": 1700,
    "num_ratings": 100_000,
    "seed": 0,
    "num_clusters": 10,
}
TABLE_RATING_RANGE = (0.5, 5.0)


@dataclasses.dataclass(frozen=True)
class TableColumns:
    """Which columns of a ratings table hold what (the names in the file's header/schema).

    Attributes:
      user, item, rating: required columns.
      timestamp: Unix seconds, or ISO 8601 dates/datetimes; None: the table has no time.
      title: the movie title; None: a movie's title is its id.
    """

    user: str
    item: str
    rating: str
    timestamp: str | None = None
    title: str | None = None

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            required = field.default is dataclasses.MISSING
            if (value is not None or required) and (not isinstance(value, str) or not value):
                raise ValueError(f"columns.{field.name}: expected a column name, got {value!r}")

    @classmethod
    def from_dict(cls, value) -> "TableColumns":
        """From ``{"user": ..., "item": ..., "rating": ..., "timestamp"?, "title"?}``.

        Raises:
          ValueError: naming the key that is missing, unknown or not a column name.
        """
        if not isinstance(value, Mapping):
            raise ValueError(f"columns: expected a mapping of column names, got {value!r}")
        _check_keys("columns.", value, [f.name for f in dataclasses.fields(cls)])
        for key in ("user", "item", "rating"):
            if key not in value:
                raise ValueError(f"columns.{key}: required")
        return cls(**value)

    def to_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


def table_format(path: str, format: str | None = None) -> str:
    """``format`` if given, else the one the suffix of ``path`` implies.

    Raises:
      ValueError: naming ``format`` when neither says csv or parquet.
    """
    if format is not None:
        return format
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _SUFFIX_FORMATS:
        raise ValueError(
            f"format: cannot infer it from the suffix of {path!r} (known: "
            f"{', '.join(sorted(_SUFFIX_FORMATS))}); set 'csv' or 'parquet'"
        )
    return _SUFFIX_FORMATS[suffix]


def _check_keys(prefix: str, value: Mapping, known) -> None:
    for key in value:
        if key not in known:
            raise ValueError(f"{prefix}{key}: unknown field (known: {', '.join(known)})")


def _number(name: str, value, integer: bool = False):
    if value is None:
        return None
    is_number = isinstance(value, int) or (isinstance(value, float) and not integer)
    if isinstance(value, bool) or not is_number or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return value if integer else float(value)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """A dataset ExampleGen can read. Fields that do not apply to ``kind`` must stay None.

    Attributes:
      kind: one of ``KINDS``.
      path: the dataset's directory (ml-100k, movielens-latest, netflix) or the ratings file
        (table); None for synthetic.
      columns: table only: which columns hold user, item, rating (and timestamp, title).
      format: table only: ``"csv"`` or ``"parquet"``; inferred from the suffix of ``path``
        when None.
      delimiter: table CSV only: one character; ``"\\t"`` for ``.tsv`` files, else ``","``.
      min_rating, max_rating: table only: the valid range, inclusive (default 0.5-5.0).
      implicit_threshold: ExampleGen keeps only ratings above it (implicit feedback); None
        keeps every rating.
      num_users, num_movies, num_ratings, seed, num_clusters: synthetic only (defaults in
        ``SYNTHETIC_DEFAULTS``, filled in so the JSON records what was generated).
      span_layout: spans only: the kind of every span directory (``SPAN_LAYOUTS``).
      window: spans only: how many of the latest spans a run reads.
      spans: spans only: the span directories read, oldest first (at most ``window``,
        resolved by ``components.sources.spans.resolve_spans``), recorded so that a new span
        changes the spec and with it ExampleGen's cache key. None: the latest ``window``
        spans at the time ExampleGen runs (for a pipeline compiled once and scheduled).
    """

    kind: str
    path: str | None = None
    columns: TableColumns | None = None
    format: str | None = None
    delimiter: str | None = None
    min_rating: float | None = None
    max_rating: float | None = None
    implicit_threshold: float | None = None
    num_users: int | None = None
    num_movies: int | None = None
    num_ratings: int | None = None
    seed: int | None = None
    num_clusters: int | None = None
    span_layout: str | None = None
    window: int | None = None
    spans: tuple[str, ...] | None = None

    def __post_init__(self):
        def put(name, value):
            object.__setattr__(self, name, value)

        if self.kind not in KINDS:
            raise ValueError(f"kind: {self.kind!r} is not one of {', '.join(KINDS)}")
        if isinstance(self.path, os.PathLike):
            put("path", os.fspath(self.path))
        if isinstance(self.columns, Mapping):
            put("columns", TableColumns.from_dict(self.columns))
        if self.kind == "synthetic":
            for name, default in SYNTHETIC_DEFAULTS.items():
                if getattr(self, name) is None:
                    put(name, default)
        if self.kind == "table":
            low, high = TABLE_RATING_RANGE
            put("min_rating", low if self.min_rating is None else self.min_rating)
            put("max_rating", high if self.max_rating is None else self.max_rating)
        if isinstance(self.spans, list):
            put("spans", tuple(self.spans))
        owners = {
            **dict.fromkeys(_TABLE_FIELDS, "table"),
            **dict.fromkeys(_SYNTHETIC_FIELDS, "synthetic"),
            **dict.fromkeys(_SPANS_FIELDS, "spans"),
        }
        for name, owner in owners.items():
            if getattr(self, name) is not None and self.kind != owner:
                raise ValueError(f"{name}: applies to kind {owner!r} only, not {self.kind!r}")
        self._check_path()
        put("implicit_threshold", _number("implicit_threshold", self.implicit_threshold))
        if self.kind == "table":
            self._check_table()
        if self.kind == "synthetic":
            self._check_synthetic()
        if self.kind == "spans":
            self._check_spans()

    def _check_path(self) -> None:
        if self.kind == "synthetic":
            if self.path is not None:
                raise ValueError("path: a synthetic dataset has no path")
        elif not isinstance(self.path, str) or not self.path:
            raise ValueError(f"path: kind {self.kind!r} needs a path, got {self.path!r}")

    def _check_table(self) -> None:
        if not isinstance(self.columns, TableColumns):
            raise ValueError(f"columns: kind 'table' needs its column names, got {self.columns}")
        if self.format is not None and self.format not in FORMATS:
            raise ValueError(f"format: {self.format!r} is not one of {', '.join(FORMATS)}")
        table_format(self.path, self.format)
        if self.delimiter is not None:
            if table_format(self.path, self.format) != "csv":
                raise ValueError("delimiter: applies to CSV tables only")
            if not isinstance(self.delimiter, str) or len(self.delimiter) != 1:
                raise ValueError(f"delimiter: expected one character, got {self.delimiter!r}")
            if self.delimiter in '"\r\n ':
                raise ValueError(f"delimiter: {self.delimiter!r} cannot separate fields")
        low = _number("min_rating", self.min_rating)
        high = _number("max_rating", self.max_rating)
        if not low < high:
            raise ValueError(f"min_rating: {low} must be below max_rating {high}")
        object.__setattr__(self, "min_rating", low)
        object.__setattr__(self, "max_rating", high)

    def _check_synthetic(self) -> None:
        for name in _SYNTHETIC_FIELDS:
            value = _number(name, getattr(self, name), integer=True)
            if value < (0 if name == "seed" else 1):
                raise ValueError(f"{name}: must be {'>= 0' if name == 'seed' else '>= 1'}")
        if self.num_clusters > self.num_movies:
            raise ValueError(
                f"num_clusters: {self.num_clusters} exceeds num_movies {self.num_movies}"
            )

    def _check_spans(self) -> None:
        if self.span_layout not in SPAN_LAYOUTS:
            raise ValueError(
                f"span_layout: {self.span_layout!r} is not one of {', '.join(SPAN_LAYOUTS)}"
            )
        window = _number("window", self.window, integer=True)
        if window is None or window < 1:
            raise ValueError(f"window: kind 'spans' needs a window >= 1, got {self.window!r}")
        spans = self.spans
        if spans is None:  # the latest ``window`` spans when the source is opened
            return
        if not isinstance(spans, tuple) or not spans or len(spans) > window:
            raise ValueError(f"spans: expected 1 to {window} span names, got {spans!r}")
        for name in spans:
            if not isinstance(name, str) or not SPAN_NAME.fullmatch(name):
                raise ValueError(f"spans: {name!r} is not a span name like 'span-3'")
        numbers = [int(SPAN_NAME.fullmatch(name).group(1)) for name in spans]
        if numbers != sorted(set(numbers)):
            raise ValueError(f"spans: {list(spans)} must be distinct and oldest first")

    def to_dict(self) -> dict:
        """The fields that are set, JSON-friendly (``columns`` as a mapping)."""
        out = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is None:
                continue
            if field.name == "columns":
                value = value.to_dict()
            out[field.name] = list(value) if field.name == "spans" else value
        return out

    @classmethod
    def from_dict(cls, value) -> "DatasetSpec":
        """The inverse of :meth:`to_dict`.

        Raises:
          ValueError: naming the field that is unknown, missing or invalid.
        """
        if not isinstance(value, Mapping):
            raise ValueError(f"dataset spec: expected a JSON object, got {value!r}")
        _check_keys("", value, [f.name for f in dataclasses.fields(cls)])
        if "kind" not in value:
            raise ValueError("kind: required")
        return cls(**value)

    def to_json(self) -> str:
        """``to_dict`` as JSON with sorted keys, e.g. ``{"kind": "ml-100k", "path": "/d"}``."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "DatasetSpec":
        """The inverse of :meth:`to_json`.

        Raises:
          ValueError: when ``text`` is not JSON, or naming the bad field.
        """
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"dataset spec: not JSON: {e}") from e
        return cls.from_dict(value)
