"""What every dataset source gives ExampleGen: a catalogue, optional users, rating records.

``data.ingest`` (run by ``data.examples.write_examples``) builds a Beam pipeline over any
:class:`Source`: it reads the (small) movie and user tables in the launcher, then reads
every rating shard in a Beam ``DoFn`` through :meth:`Source.read_ratings`, one record per
input row, streaming. Sources only parse; ExampleGen deduplicates (keeps each (user, movie)
pair's latest rating), applies the implicit-feedback threshold, splits and writes. A row that
does not become a record comes back as a :class:`~data.records.Reject` naming file, row and
reason, so nothing is dropped silently.

Each Source class is the source of one kind in ``data.sources.registry``;
``data.sources.make_source`` builds it with :meth:`Source.from_spec` from the kind's spec.
"""

import abc
import dataclasses
from collections.abc import Iterator, Mapping

from data.records import Movie, Rating, Reject, User
from data.sources.spec import KindSpec


@dataclasses.dataclass(frozen=True)
class Shard:
    """One independently readable piece of a source's ratings (a file, a user range...).

    Attributes:
      name: shown in logs and benchmark output, e.g. the file's base name.
      spec: JSON-friendly values the source needs to read it (paths, ranges); picklable.
    """

    name: str
    spec: Mapping


class Source(abc.ABC):
    """A dataset's files, read as records. Instances must be picklable (Beam ships them)."""

    #: Short name used in messages, e.g. ``"ml-latest"``, ``"netflix"``.
    name: str = ""
    #: Valid ratings, inclusive; other values are rejected as ``bad_rating``.
    min_rating: float = 1.0
    max_rating: float = 5.0
    #: Whether ratings carry real timestamps (the time and leave-last-n splits need them).
    has_timestamps: bool = True

    @abc.abstractmethod
    def read_movies(self, rejects: list[Reject]) -> dict[str, Movie]:
        """The whole catalogue: movie id -> Movie, in input order.

        Bad rows are appended to ``rejects``; the first row of a repeated id wins, later ones
        are ``duplicate`` rejects.

        Raises:
          ValueError: naming the file (and column) when a required file or column is missing
            or no row is valid.
        """

    def read_users(self, rejects: list[Reject]) -> dict[str, User] | None:
        """User id -> User for sources with a user table; None (the default) otherwise."""
        return None

    @abc.abstractmethod
    def rating_shards(self) -> list[Shard]:
        """The pieces :meth:`read_ratings` reads; together they cover every rating row once.

        Raises:
          ValueError: naming the file when a ratings file is missing or lacks a required
            column (checked here, before any Beam work starts).
        """

    @abc.abstractmethod
    def read_ratings(
        self,
        shard: Shard,
        movies: Mapping[str, Movie] | None,
        users: Mapping[str, User] | None,
    ) -> Iterator[Rating | Reject]:
        """Streams one shard: a Rating or a Reject per input row, in row order.

        Never holds the whole shard in memory. No deduplication here. A rating of a movie
        missing from ``movies`` is an ``unknown_movie`` reject, of a user missing from
        ``users`` an ``unknown_user`` reject (no check when the mapping is None). Sources
        without timestamps give ``timestamp=0``. Every Rating carries its ``line_number``
        (physical 1-based line of a text file, header included; 1-based row of a Parquet
        file): ExampleGen breaks timestamp ties by it and names it in duplicate rejects, which
        also list its ``raw_line`` (the row's original text, as a Reject's raw_line).
        """

    @classmethod
    def from_spec(cls, spec: KindSpec) -> "Source":
        """The source of a dataset of this class's kind; ``spec`` is that kind's spec
        dataclass (``data.sources.registry``). This default fits the directory kinds:
        ``cls(spec.path)``."""
        return cls(spec.path)

    def details(self) -> dict:
        """What :meth:`describe` records beside name and kind (paths, options)."""
        return {}

    def describe(self) -> dict:
        """JSON-friendly description recorded with the examples: ``name``, ``kind`` (the
        registry's kind of this class; left out for a class that is not in it), then
        :meth:`details`."""
        from data.sources import registry  # the registry imports every source module

        kind = registry.kind_of(self)
        return {"name": self.name, **({"kind": kind} if kind else {}), **self.details()}
