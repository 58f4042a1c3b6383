"""What every dataset source gives ExampleGen: a catalogue, optional users, rating records.

``components.example_gen`` builds a Beam pipeline over any :class:`Source`: it reads the
(small) movie and user tables in the launcher, then reads every rating shard in a Beam
``DoFn`` through :meth:`Source.read_ratings`, one record per input row, streaming. Sources
only parse; ExampleGen deduplicates (keeps each (user, movie) pair's latest rating), applies
the implicit-feedback threshold, splits and writes. A row that does not become a record comes
back as a :class:`~components.movielens.Reject` naming file, row and reason, so nothing is
dropped silently.
"""

import abc
import dataclasses
from collections.abc import Iterator, Mapping

from components.movielens import Movie, Rating, Reject, User


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

    def describe(self) -> dict:
        """JSON-friendly description recorded with the examples (kind, paths, options)."""
        return {"name": self.name}
