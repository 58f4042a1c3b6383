"""The MovieLens "latest" layout: ml-latest-small, ml-latest, ml-20m, ml-25m, ml-32m.

:class:`MovieLensLatestSource` is the source of kind ``"movielens-latest"`` in
``data.sources.registry``, whose data home needs ``FILES``; ExampleGen reads it through the
:class:`~data.sources.base.Source` interface.
"""

import os
from collections.abc import Iterator, Mapping

import data.sources.delimited as delimited
from data.records import Movie, Rating, Reject, User, year_in_title
from data.sources.base import Shard, Source

RATINGS_FILE = "ratings.csv"
MOVIES_FILE = "movies.csv"
FILES = (RATINGS_FILE, MOVIES_FILE)
RATINGS_COLUMNS = {"user": "userId", "movie": "movieId", "rating": "rating", "time": "timestamp"}
MOVIES_COLUMNS = {"movie": "movieId", "title": "title"}
NO_GENRES = "(no genres listed)"


class MovieLensLatestSource(Source):
    """``ratings.csv`` (userId,movieId,rating,timestamp) and ``movies.csv`` (movieId,title,genres).

    Columns are found by header name (case-insensitive), so their order does not matter;
    ``genres`` is optional. Each file is decoded as UTF-8 (a byte-order mark is dropped) unless
    a probe of the whole file finds bytes that are not UTF-8: then the whole file is read as
    latin-1. A movie's year is the trailing "(1995)" of its title, 0 when there is none;
    genres are split on ``|``, and "(no genres listed)" means none. Ratings are 0.5-5.0.
    """

    min_rating = 0.5
    max_rating = 5.0
    has_timestamps = True

    def __init__(self, directory: str | os.PathLike, name: str | None = None):
        """Args:
        directory: holds ratings.csv and movies.csv, e.g. ``<data home>/ml-25m``.
        name: used in messages; the directory's base name when None.
        """
        self.directory = os.fspath(directory)
        self.name = name or os.path.basename(os.path.normpath(self.directory))

    def _file(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def read_movies(self, rejects: list[Reject]) -> dict[str, Movie]:
        table = delimited.DelimitedFile.open(self._file(MOVIES_FILE))
        columns = table.columns(MOVIES_COLUMNS, {"genres": "genres"})

        def parse(fields: list[str]) -> Movie | None:
            movie_id = delimited.int_id(fields[columns["movie"]])
            title = fields[columns["title"]].strip()
            if movie_id is None or not title:
                return None
            genres = () if columns["genres"] is None else _genres(fields[columns["genres"]])
            return Movie(movie_id, title, genres, year_in_title(title))

        return delimited.read_catalogue(table, parse, rejects)

    def rating_shards(self) -> list[Shard]:
        return [delimited.ratings_file_shard(self._file(RATINGS_FILE), RATINGS_COLUMNS)]

    def read_ratings(
        self,
        shard: Shard,
        movies: Mapping[str, Movie] | None,
        users: Mapping[str, User] | None,
    ) -> Iterator[Rating | Reject]:
        return delimited.read_ratings_file(
            shard.spec, RATINGS_COLUMNS, self.min_rating, self.max_rating, movies, users
        )

    def details(self) -> dict:
        return {"path": self.directory}


def _genres(text: str) -> tuple[str, ...]:
    """``"Adventure|Children"`` -> ``("Adventure", "Children")``; none for "(no genres listed)"."""
    names = (name.strip() for name in text.split("|"))
    return tuple(name for name in names if name and name != NO_GENRES)
