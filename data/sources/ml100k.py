"""MovieLens 100k (u.item, u.user, u.data) behind the Source interface.

:class:`MovieLens100kSource` is the source of kind ``"ml-100k"`` in
``data.sources.registry``, whose data home needs ``FILES``. Parsing is ``data.records``'s,
line for line: the same records and rejects as its readers, except that ratings are not
deduplicated here (ExampleGen does that).
"""

import os
from collections.abc import Iterator, Mapping

from data import fileio
from data.records import (
    MAX_RATING,
    MIN_RATING,
    Movie,
    Rating,
    Reject,
    User,
    parse_ratings,
    read_movies,
    read_users,
)
from data.sources.base import Shard, Source

RATINGS_FILE = "u.data"
MOVIES_FILE = "u.item"
USERS_FILE = "u.user"
FILES = (RATINGS_FILE, MOVIES_FILE, USERS_FILE)


class MovieLens100kSource(Source):
    """The three latin-1 ml-100k files of one directory; ratings 1-5 with Unix timestamps."""

    name = "ml-100k"
    min_rating = MIN_RATING
    max_rating = MAX_RATING
    has_timestamps = True

    def __init__(self, directory: str | os.PathLike):
        """Args:
        directory: holds u.data, u.item and u.user, e.g. ``<data home>/ml-100k``.
        """
        self.directory = os.fspath(directory)

    def _file(self, name: str) -> str:
        path = os.path.join(self.directory, name)
        if not fileio.is_file(path):
            raise ValueError(f"MovieLens file {path} is missing")
        return path

    def read_movies(self, rejects: list[Reject]) -> dict[str, Movie]:
        path = self._file(MOVIES_FILE)
        movies = read_movies(path, rejects)
        if not movies:
            raise ValueError(f"{path} has no valid movie line")
        return movies

    def read_users(self, rejects: list[Reject]) -> dict[str, User]:
        path = self._file(USERS_FILE)
        users = read_users(path, rejects)
        if not users:
            raise ValueError(f"{path} has no valid user line")
        return users

    def rating_shards(self) -> list[Shard]:
        return [Shard(RATINGS_FILE, {"path": self._file(RATINGS_FILE)})]

    def read_ratings(
        self,
        shard: Shard,
        movies: Mapping[str, Movie] | None,
        users: Mapping[str, User] | None,
    ) -> Iterator[Rating | Reject]:
        """Streams u.data; raises ValueError naming it, at its end, if no line was valid."""
        valid = 0
        for record in parse_ratings(shard.spec["path"], movies, users):
            valid += isinstance(record, Rating)
            yield record
        if not valid:
            raise ValueError(f"{shard.spec['path']} has no valid rating line")

    def details(self) -> dict:
        return {"path": self.directory}
