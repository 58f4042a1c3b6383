"""What ExampleGen reads: a :class:`DatasetSpec`, a dataset kind plus that kind's own spec.

Every kind in ``data.sources.registry`` has one small frozen spec dataclass here that holds
only the fields the kind takes, and checks them: :class:`DirectorySpec` (ml-100k,
movielens-latest, netflix), :class:`TableSpec`, :class:`SyntheticSpec` and
:class:`SpansSpec`. A :class:`DatasetSpec` pairs a kind with its spec, plus the
implicit-feedback threshold, which every kind takes. Its JSON stays flat, e.g.
``{"kind": "table", "path": "r.csv", "columns": {...}}``. Runners build a spec once (from CLI
flags or ``data.sources.dataset_spec``); ExampleGen takes its JSON as a parameter and calls
``data.sources.make_source``. Every error starts with the name of the field it is about.

``data.sources`` re-exports these names. This module imports none of the sources:
DatasetSpec looks up a kind's spec dataclass in the registry when it is built.
"""

import dataclasses
import json
import math
import os
import re
from collections.abc import Mapping

FORMATS = ("csv", "parquet")
_SUFFIX_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Spans: directories ``span-<n>`` under one root, each a dataset of one of these kinds.
SPAN_LAYOUTS = ("movielens-latest", "ml-100k")
SPAN_NAME = re.compile(r"span-([0-9]+)")
TABLE_RATING_RANGE = (0.5, 5.0)
# The fields every kind takes, beside its own spec's.
COMMON_FIELDS = ("implicit_threshold",)


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
    is_number = isinstance(value, int) or (isinstance(value, float) and not integer)
    if isinstance(value, bool) or not is_number or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise ValueError(f"{name}: expected {kind}, got {value!r}")
    return value if integer else float(value)


def _path(value, what: str) -> str:
    value = os.fspath(value) if isinstance(value, os.PathLike) else value
    if not isinstance(value, str) or not value:
        raise ValueError(f"path: expected {what}, got {value!r}")
    return value


def _put(spec, name: str, value) -> None:
    object.__setattr__(spec, name, value)


class KindSpec:
    """What the spec dataclass of every kind has: its field names and a JSON-friendly dict.

    Subclasses are frozen dataclasses whose ``__post_init__`` checks (and normalizes, e.g. a
    path-like to text) every field, raising ValueError that starts with the field's name.
    """

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def required_fields(cls) -> tuple[str, ...]:
        return tuple(
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        )

    def to_dict(self) -> dict:
        """The fields that are set (not None), JSON-friendly: mappings and lists."""
        out = {}
        for name in self.field_names():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, TableColumns):
                value = value.to_dict()
            out[name] = list(value) if isinstance(value, tuple) else value
        return out


@dataclasses.dataclass(frozen=True)
class DirectorySpec(KindSpec):
    """A dataset that is one directory in its kind's layout (ml-100k, movielens-latest,
    netflix).

    Attributes:
      path: the directory, e.g. ``<data home>/ml-25m``.
    """

    path: str

    def __post_init__(self):
        _put(self, "path", _path(self.path, "the dataset's directory"))


@dataclasses.dataclass(frozen=True)
class TableSpec(KindSpec):
    """A ratings table, CSV or Parquet (``data.sources.table``).

    Attributes:
      path: the ratings file.
      columns: which columns hold user, item, rating (and timestamp, title); a mapping
        becomes :class:`TableColumns`.
      format: ``"csv"`` or ``"parquet"``; inferred from the suffix of ``path`` when None.
      delimiter: CSV only: one character; None: ``"\\t"`` for ``.tsv`` files, else ``","``.
      min_rating, max_rating: the valid range, inclusive.
    """

    path: str
    columns: TableColumns
    format: str | None = None
    delimiter: str | None = None
    min_rating: float = TABLE_RATING_RANGE[0]
    max_rating: float = TABLE_RATING_RANGE[1]

    def __post_init__(self):
        _put(self, "path", _path(self.path, "the ratings file"))
        if isinstance(self.columns, Mapping):
            _put(self, "columns", TableColumns.from_dict(self.columns))
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
        _put(self, "min_rating", low)
        _put(self, "max_rating", high)


@dataclasses.dataclass(frozen=True)
class SyntheticSpec(KindSpec):
    """Generated ratings (``data.sources.synthetic``); the defaults are about the size of
    MovieLens 100k, and the JSON records them so that it says what was generated.

    Attributes:
      num_users, num_movies, num_ratings, num_clusters: sizes, >= 1; at most num_movies
        clusters.
      seed: >= 0.
    """

    num_users: int = 1000
    num_movies: int = 1700
    num_ratings: int = 100_000
    seed: int = 0
    num_clusters: int = 10

    def __post_init__(self):
        for name in self.field_names():
            value = _number(name, getattr(self, name), integer=True)
            if value < (0 if name == "seed" else 1):
                raise ValueError(f"{name}: must be {'>= 0' if name == 'seed' else '>= 1'}")
        if self.num_clusters > self.num_movies:
            raise ValueError(
                f"num_clusters: {self.num_clusters} exceeds num_movies {self.num_movies}"
            )


# What a synthetic spec gets for a field left out.
SYNTHETIC_DEFAULTS = {f.name: f.default for f in dataclasses.fields(SyntheticSpec)}


@dataclasses.dataclass(frozen=True)
class SpansSpec(KindSpec):
    """Drops ``span-1/``, ``span-2/``, ... under one root, read as one dataset
    (``data.sources.spans``).

    Attributes:
      path: the root directory.
      span_layout: the kind of every span directory (``SPAN_LAYOUTS``).
      window: how many of the latest spans a run reads, >= 1.
      spans: the span directories read, oldest first (at most ``window``, resolved by
        ``data.sources.spans.resolve_spans``), recorded so that a new span changes the spec
        and with it ExampleGen's cache key; a list becomes a tuple. None: the latest
        ``window`` spans at the time ExampleGen runs (for a pipeline compiled once and
        scheduled).
    """

    path: str
    span_layout: str
    window: int
    spans: tuple[str, ...] | None = None

    def __post_init__(self):
        _put(self, "path", _path(self.path, "the span root directory"))
        if self.span_layout not in SPAN_LAYOUTS:
            raise ValueError(
                f"span_layout: {self.span_layout!r} is not one of {', '.join(SPAN_LAYOUTS)}"
            )
        window = _number("window", self.window, integer=True)
        if window < 1:
            raise ValueError(f"window: kind 'spans' needs a window >= 1, got {self.window!r}")
        if isinstance(self.spans, list):
            _put(self, "spans", tuple(self.spans))
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


def _kind(name):
    """The registry's row of kind ``name``.

    Raises:
      ValueError: naming ``kind`` when there is no such kind.
    """
    from data.sources import registry  # the registry imports the sources, which import this

    if not isinstance(name, str) or name not in registry.TABLE:
        raise ValueError(f"kind: {name!r} is not one of {', '.join(registry.KINDS)}")
    return registry.TABLE[name]


def _kind_spec(kind, fields: Mapping) -> KindSpec:
    """The spec dataclass of ``kind`` built from its fields, flat as in the JSON.

    A None value is a field left out, as in the JSON, which has no nulls.
    """
    from data.sources import registry

    known = kind.spec.field_names()
    for key, value in fields.items():
        if key in known:
            continue
        owners = [k.name for k in registry.TABLE.values() if key in k.spec.field_names()]
        if not owners:
            names = ", ".join(("kind", *known, *COMMON_FIELDS))
            raise ValueError(f"{key}: unknown field (known for kind {kind.name!r}: {names})")
        if value is not None:
            owner = ", ".join(repr(name) for name in owners)
            raise ValueError(
                f"{key}: applies to kind{'s' if len(owners) > 1 else ''} {owner} only, "
                f"not {kind.name!r}"
            )
    given = {key: value for key, value in fields.items() if key in known and value is not None}
    for name in kind.spec.required_fields():
        if name not in given:
            raise ValueError(f"{name}: required by kind {kind.name!r}")
    return kind.spec(**given)


@dataclasses.dataclass(frozen=True, init=False)
class DatasetSpec:
    """A dataset ExampleGen can read: a kind, that kind's own spec, the implicit threshold.

    Build it from the kind's spec, ``DatasetSpec("table", TableSpec("r.csv", columns))``,
    or from that spec's fields, flat as in the JSON:
    ``DatasetSpec(kind="table", path="r.csv", columns=columns)``. The spec's fields read
    through: ``spec.path`` is ``spec.options.path`` (an AttributeError for a field the kind
    does not take).

    Attributes:
      kind: one of ``KINDS`` (the rows of ``data.sources.registry``).
      options: the kind's spec dataclass (its registry row's ``spec``), e.g. a TableSpec.
      implicit_threshold: ExampleGen keeps only ratings above it (implicit feedback); None
        keeps every rating.
    """

    kind: str
    options: KindSpec
    implicit_threshold: float | None = None

    def __init__(
        self,
        kind: str,
        options: KindSpec | None = None,
        *,
        implicit_threshold: float | None = None,
        **fields,
    ):
        """Raises:
        ValueError: naming the field that is unknown, missing, invalid, or that does not
          apply to ``kind``.
        """
        row = _kind(kind)
        if options is None:
            options = _kind_spec(row, fields)
        elif fields:
            raise ValueError(f"{next(iter(fields))}: give the options or their fields, not both")
        elif type(options) is not row.spec:
            raise ValueError(f"options: kind {kind!r} takes a {row.spec.__name__}, got {options!r}")
        if implicit_threshold is not None:
            implicit_threshold = _number("implicit_threshold", implicit_threshold)
        _put(self, "kind", kind)
        _put(self, "options", options)
        _put(self, "implicit_threshold", implicit_threshold)

    def __getattr__(self, name: str):
        # Only called when ordinary lookup fails. ``__dict__`` is empty while unpickling.
        options = self.__dict__.get("options")
        if options is not None and not name.startswith("_") and name in options.field_names():
            return getattr(options, name)
        raise AttributeError(
            f"{type(self).__name__} of kind {self.__dict__.get('kind')!r} has no field {name!r}"
        )

    def to_dict(self) -> dict:
        """``kind``, the set fields of the kind's spec, ``implicit_threshold`` if set;
        JSON-friendly (``columns`` as a mapping, ``spans`` as a list)."""
        out = {"kind": self.kind, **self.options.to_dict()}
        if self.implicit_threshold is not None:
            out["implicit_threshold"] = self.implicit_threshold
        return out

    @classmethod
    def from_dict(cls, value) -> "DatasetSpec":
        """The inverse of :meth:`to_dict`: ``{"kind": ..., <the kind's fields>...}``.

        Raises:
          ValueError: naming the field that is unknown, missing or invalid.
        """
        if not isinstance(value, Mapping):
            raise ValueError(f"dataset spec: expected a JSON object, got {value!r}")
        if "kind" not in value:
            raise ValueError("kind: required")
        row = _kind(value["kind"])
        fields = {k: v for k, v in value.items() if k != "kind" and k not in COMMON_FIELDS}
        for key in fields:
            if not isinstance(key, str):
                raise ValueError(f"{key!r}: unknown field (field names are text)")
        return cls(
            row.name,
            _kind_spec(row, fields),
            implicit_threshold=value.get("implicit_threshold"),
        )

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
