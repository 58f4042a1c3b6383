"""The Netflix Prize data as the Kaggle CSVs spread it: ratings without time, titles by year.

:class:`NetflixSource` is the source of kind ``"netflix"`` in ``data.sources.registry``.
The files (``FILES``) are not downloadable (Kaggle needs an account); users place them in
``<data home>/netflix/``.
"""

import os
from collections.abc import Iterator, Mapping

import data.sources.delimited as delimited
from data.records import Movie, Rating, Reject, User
from data.sources.base import Shard, Source

RATINGS_FILE = "Netflix_Dataset_Rating.csv"
MOVIES_FILE = "Netflix_Dataset_Movie.csv"
FILES = (RATINGS_FILE, MOVIES_FILE)
RATINGS_COLUMNS = {"user": "User_ID", "movie": "Movie_ID", "rating": "Rating"}
MOVIES_COLUMNS = {"movie": "Movie_ID", "year": "Year", "title": "Name"}


class NetflixSource(Source):
    """``Netflix_Dataset_Rating.csv`` (User_ID, Rating, Movie_ID) and
    ``Netflix_Dataset_Movie.csv`` (Movie_ID, Year, Name).

    Columns are found by header name, case-insensitive and trimmed, in any order. Ratings are
    1-5 and carry no time (``timestamp=0``, ``has_timestamps`` False). Real copies are messy:
    CRLF endings, trailing rows of empty fields (``blank_line`` rejects), missing years (an
    empty, ``NULL`` or ``NaN`` year is 0), and names with commas that are sometimes not quoted:
    when Name is the last column, surplus fields of a row are joined back into the name. Each
    file is decoded as UTF-8 unless a probe of the whole file finds bytes that are not UTF-8:
    then the whole file is read as latin-1.
    """

    name = "netflix"
    min_rating = 1.0
    max_rating = 5.0
    has_timestamps = False

    def __init__(self, directory: str | os.PathLike):
        """Args:
        directory: holds the two CSVs, e.g. ``<data home>/netflix``.
        """
        self.directory = os.fspath(directory)

    def _file(self, name: str) -> str:
        return os.path.join(self.directory, name)

    def read_movies(self, rejects: list[Reject]) -> dict[str, Movie]:
        table = delimited.DelimitedFile.open(self._file(MOVIES_FILE))
        at = table.columns(MOVIES_COLUMNS)

        def parse(fields: list[str]) -> Movie | None:
            movie_id = delimited.int_id(fields[at["movie"]])
            year = delimited.year_value(fields[at["year"]])
            title = fields[at["title"]].strip()
            if movie_id is None or year is None or not title:
                return None
            return Movie(movie_id, title, (), year)

        name_is_last = at["title"] == len(table.header()) - 1
        return delimited.read_catalogue(table, parse, rejects, merge_extra_into_last=name_is_last)

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
