"""Spans: ratings that arrive as drops (``span-1/``, ``span-2/``, ...) under one root directory.

``movierec retrain`` calls :func:`spans_spec`, which picks the latest ``window`` spans
(:func:`resolve_spans`) and records them in a ``DatasetSpec`` of kind ``"spans"`` (a
:class:`~data.sources.spec.SpansSpec`); :class:`SpansSource` is that kind's source in
``data.sources.registry``, which ExampleGen reads like any other source.

Each span is a whole dataset of one kind, its layout (``SpansSpec.span_layout``, one of
``SPAN_LAYOUTS``): MovieLens "latest" (``ratings.csv``, ``movies.csv``) or ml-100k
(``u.data``, ``u.item``, ``u.user``), read by that kind's source from the registry. Spans
are immutable once they appear: a producer writes a span under another name and renames it
to ``span-<n>`` when it is complete, so a reader never sees half a drop.
"""

import dataclasses
import os
from collections.abc import Iterator, Mapping, Sequence

from data import fileio
from data.records import Movie, Rating, Reject, User
from data.sources.base import Shard, Source
from data.sources.spec import SPAN_LAYOUTS, SPAN_NAME, DatasetSpec, DirectorySpec, SpansSpec


def list_spans(root: str | os.PathLike) -> list[str]:
    """The span directories under ``root``, oldest (lowest number) first.

    Only directories named ``span-<n>`` count; anything else (a drop still being written
    under a temporary name, files) is ignored.

    Raises:
      ValueError: naming ``root`` when it is not a directory.
    """
    root = os.fspath(root)
    if not fileio.is_dir(root):
        raise ValueError(f"span root {root} is not a directory")
    names = [
        name
        for name in fileio.list_dir(root)
        if SPAN_NAME.fullmatch(name) and fileio.is_dir(os.path.join(root, name))
    ]
    return sorted(names, key=_number)


def resolve_spans(root: str | os.PathLike, window: int) -> tuple[str, ...]:
    """The latest ``window`` spans under ``root``, oldest first.

    Args:
      root: the span root directory.
      window: how many spans to read, >= 1.

    Returns:
      e.g. ``("span-2", "span-3")`` for window 2 over span-1, span-2 and span-3.

    Raises:
      ValueError: when ``window`` < 1, ``root`` is not a directory or holds no span.
    """
    if window < 1:
        raise ValueError(f"window: must be >= 1, got {window}")
    spans = list_spans(root)
    if not spans:
        raise ValueError(f"span root {os.fspath(root)} holds no span directory (span-1, ...)")
    return tuple(spans[-window:])


def _number(name: str) -> int:
    return int(SPAN_NAME.fullmatch(name).group(1))


def _span_source(directory: str, layout: str) -> Source:
    """The source of one span: its layout's Source class in the registry."""
    from data.sources import registry  # the registry imports this module

    return registry.TABLE[layout].source.from_spec(DirectorySpec(directory))


def _in_span(span: str, reject: Reject) -> Reject:
    """The reject with its file named inside the span root, e.g. ``span-2/ratings.csv``."""
    return dataclasses.replace(reject, file=f"{span}/{reject.file}")


class SpansSource(Source):
    """Several spans read as one dataset.

    The catalogue (and, for ml-100k spans, the user table) is the union of the spans'; when
    spans disagree about a movie or user, the newest span wins. Every span's ratings file is
    a shard, oldest span first, so ExampleGen's deduplication keeps each (user, movie) pair's
    latest rating, and on equal timestamps the one of the newer span. Rejects name their file
    inside the root: ``span-2/ratings.csv``.
    """

    name = "spans"
    has_timestamps = True

    def __init__(
        self,
        root: str | os.PathLike,
        span_layout: str,
        spans: Sequence[str] | None,
        window: int | None = None,
    ):
        """Args:
        root: the span root directory.
        span_layout: one of ``SPAN_LAYOUTS``.
        spans: the span directories to read, oldest first (``resolve_spans``); None: the
          latest ``window`` spans found now, which is what a scheduled pipeline compiled
          once (Vertex AI) needs, since its spec cannot name spans that arrive later.
        window: with ``spans`` None, how many of the latest spans to read.
        """
        if span_layout not in SPAN_LAYOUTS:
            raise ValueError(f"span_layout: {span_layout!r} is not one of {SPAN_LAYOUTS}")
        self.root = os.fspath(root)
        self.span_layout = span_layout
        if spans is None:
            if window is None:
                raise ValueError("window: needed to find the latest spans")
            spans = resolve_spans(self.root, window)
        self.spans = tuple(spans)
        self._sources = [_span_source(os.path.join(self.root, s), span_layout) for s in spans]
        # One layout, so one rating range.
        self.min_rating = self._sources[0].min_rating
        self.max_rating = self._sources[0].max_rating

    def _union(self, read, rejects: list[Reject]) -> dict | None:
        table = None
        for span, source in zip(self.spans, self._sources, strict=True):
            span_rejects: list[Reject] = []
            rows = read(source, span_rejects)
            rejects.extend(_in_span(span, r) for r in span_rejects)
            if rows is not None:
                table = {} if table is None else table
                table.update(rows)
        return table

    def read_movies(self, rejects: list[Reject]) -> dict[str, Movie]:
        return self._union(lambda source, out: source.read_movies(out), rejects)

    def read_users(self, rejects: list[Reject]) -> dict[str, User] | None:
        return self._union(lambda source, out: source.read_users(out), rejects)

    def rating_shards(self) -> list[Shard]:
        return [
            Shard(f"{span}/{shard.name}", {"span": i, "name": shard.name, "spec": shard.spec})
            for i, (span, source) in enumerate(zip(self.spans, self._sources, strict=True))
            for shard in source.rating_shards()
        ]

    def read_ratings(
        self,
        shard: Shard,
        movies: Mapping[str, Movie] | None,
        users: Mapping[str, User] | None,
    ) -> Iterator[Rating | Reject]:
        i = shard.spec["span"]
        inner = Shard(shard.spec["name"], shard.spec["spec"])
        for record in self._sources[i].read_ratings(inner, movies, users):
            yield _in_span(self.spans[i], record) if isinstance(record, Reject) else record

    @classmethod
    def from_spec(cls, spec: SpansSpec) -> "SpansSource":
        return cls(spec.path, spec.span_layout, spec.spans, spec.window)

    def details(self) -> dict:
        return {"path": self.root, "span_layout": self.span_layout, "spans": list(self.spans)}


def spans_spec(root: str | os.PathLike, span_layout: str, window: int) -> DatasetSpec:
    """The spec of the latest ``window`` spans under ``root`` (see :func:`resolve_spans`).

    Raises:
      ValueError: naming the field, or the root when it holds no span.
    """
    spans = resolve_spans(root, window)
    return DatasetSpec("spans", SpansSpec(os.path.abspath(root), span_layout, window, spans))
