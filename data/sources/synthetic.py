"""Synthetic ratings with structure a model can learn, at any size, for tests and benchmarks.

:class:`SyntheticSource` is the source of kind ``"synthetic"`` in
``data.sources.registry``. The world: every movie belongs to one of K clusters (its genre)
and has a Zipf-like popularity; every user has an affinity per cluster. A user watches movies
of the clusters they like more (popular ones more often) and rates them

    rating = round_to_half_star(3 + user bias + movie quality + 0.5 * affinity + noise)

clipped to [0.5, 5]. Popular movies are a little better rated, as in real data.

Every user's ratings come from a random stream seeded by (seed, block of 256 users), so they
do not depend on how users are split into shards; shards are user ranges generated with
numpy one block at a time, never holding more than a block of ratings.
"""

import math
from collections.abc import Iterator, Mapping

import numpy as np

from data.records import GENRE_NAMES, UNKNOWN_MOVIE, UNKNOWN_USER, Movie, Rating, Reject, User
from data.sources.base import Shard, Source
from data.sources.spec import SYNTHETIC_DEFAULTS, SyntheticSpec

BLOCK_USERS = 256
_SHARD_RATINGS = 1_000_000  # rating_shards aims at this many ratings per shard
_POPULARITY_EXPONENT = 1.1  # Zipf: the movie of popularity rank r is drawn ~ r ** -1.1
_CLUSTER_FOCUS = 1.5  # how strongly users watch the clusters they like (softmax scale)
_EXPLORE = 0.1  # share of a user's draws spread evenly over clusters
_AFFINITY_EFFECT = 0.5  # rating points per unit of cluster affinity
_MEAN, _USER_BIAS, _MOVIE_QUALITY, _NOISE = 3.0, 0.35, 0.3, 0.6
_POPULAR_BONUS = 0.25  # rating points per standard deviation of log popularity
_START, _SPAN = 946_684_800, 15 * 365 * 86_400  # users start between 2000 and 2015
_MEAN_GAP_SECONDS = 86_400  # mean time between two ratings of a user
_TOP_UPS = 3  # extra rounds of draws for users short of unique movies
_FILE = "synthetic"


class _World:
    """Everything shared by all users (fixed by seed): movies, and each user's rating count.

    Attributes:
      cluster: [num_movies] int, each movie's cluster.
      quality: [num_movies] float64, each movie's rating offset.
      year: [num_movies] int, release years 1920-2020, recent ones likelier.
      movies_by_cluster: [num_movies] int movie indices, by cluster, then by popularity.
      cluster_cdf: [num_movies] float64, per position of ``movies_by_cluster``: its cluster
        plus the cumulative popularity share of the cluster's movies up to it.
      counts: [num_users] int, ratings per user.
    """

    def __init__(self, num_users, num_movies, num_ratings, seed, num_clusters):
        rng = np.random.default_rng([seed, 0])
        m, k = num_movies, num_clusters
        self.cluster = rng.permutation(np.arange(m) % k)  # every cluster gets a movie
        rank = rng.permutation(m) + 1
        popularity = rank.astype(np.float64) ** -_POPULARITY_EXPONENT
        log_pop = np.log(popularity)
        self.quality = _MOVIE_QUALITY * rng.standard_normal(m) + _POPULAR_BONUS * (
            (log_pop - log_pop.mean()) / (log_pop.std() or 1.0)
        )
        self.year = np.clip(2020 - np.floor(rng.exponential(15.0, m)), 1920, 2020).astype(int)
        # One CDF per cluster, laid end to end: cluster c's lies in (c, c + 1], so a single
        # searchsorted of c + u (u uniform in [0, 1)) draws a movie of cluster c.
        order = np.lexsort((-popularity, self.cluster))
        self.movies_by_cluster = order
        cdf = np.zeros(m)
        for c in range(k):
            members = order[self.cluster[order] == c]
            share = np.cumsum(popularity[members]) / popularity[members].sum()
            share[-1] = 1.0  # so that rounding never sends a draw into the next cluster
            cdf[self.cluster[order] == c] = c + share
        self.cluster_cdf = cdf
        self.counts = _rating_counts(rng, num_users, num_movies, num_ratings)


def _rating_counts(rng, num_users: int, num_movies: int, num_ratings: int) -> np.ndarray:
    """Ratings per user: heavy-tailed (log-normal), at most half the movies, summing to
    ``num_ratings`` when that is possible.

    Every user gets a floor (up to 20, as MovieLens requires); the rest is shared in proportion
    to a log-normal weight, capped, with the shares of capped users passed on to the others.
    """
    cap = max(1, num_movies // 2)
    floor = int(np.clip(num_ratings // (4 * num_users), 1, min(20, cap)))
    weight = rng.lognormal(0.0, 1.0, num_users)
    rest = max(0, num_ratings - floor * num_users)
    room = cap - floor
    low, high = 0.0, rest / weight.min() + 1.0
    for _ in range(100):  # bisection on the scale that makes the capped shares sum to rest
        scale = (low + high) / 2
        if np.minimum(scale * weight, room).sum() < rest:
            low = scale
        else:
            high = scale
    share = np.minimum(high * weight, room)
    counts = np.floor(share).astype(np.int64)
    short = int(min(rest - counts.sum(), num_users))
    if short > 0:  # largest remainders first, among users below the cap
        remainder = np.where(counts < room, share - counts, -1.0)
        counts[np.argsort(-remainder, kind="stable")[:short]] += 1
    return floor + np.minimum(counts, room)


class SyntheticSource(Source):
    """Generated users, movies and ratings; see the module docstring for the model.

    Movie ids are "1".."num_movies", user ids "1".."num_users"; titles read "Synthetic Movie
    12 (1994)", genres are the cluster's (a MovieLens genre name). Each user rates unique
    movies, at increasing timestamps. No user table. ``num_ratings`` is met exactly unless
    users run out of unique movies to draw (at most half the catalogue per user).
    """

    name = "synthetic"
    min_rating = 0.5
    max_rating = 5.0
    has_timestamps = True

    def __init__(
        self,
        num_users: int = SYNTHETIC_DEFAULTS["num_users"],
        num_movies: int = SYNTHETIC_DEFAULTS["num_movies"],
        num_ratings: int = SYNTHETIC_DEFAULTS["num_ratings"],
        seed: int = SYNTHETIC_DEFAULTS["seed"],
        num_clusters: int = SYNTHETIC_DEFAULTS["num_clusters"],
    ):
        if num_clusters > num_movies:
            raise ValueError(f"num_clusters: {num_clusters} exceeds num_movies {num_movies}")
        self.num_users, self.num_movies, self.num_ratings = num_users, num_movies, num_ratings
        self.seed, self.num_clusters = seed, num_clusters
        self._world_cache = None

    def __getstate__(self):
        # Beam pickles sources; each worker rebuilds the world from the seed instead.
        return {**self.__dict__, "_world_cache": None}

    @property
    def _world(self) -> _World:
        if self._world_cache is None:
            self._world_cache = _World(
                self.num_users, self.num_movies, self.num_ratings, self.seed, self.num_clusters
            )
        return self._world_cache

    def genre(self, cluster: int) -> str:
        """The genre name of a cluster: MovieLens genres in u.genre order, then "Cluster <n>"."""
        names = GENRE_NAMES[1:]
        return names[cluster] if cluster < len(names) else f"Cluster {cluster}"

    def read_movies(self, rejects: list[Reject]) -> dict[str, Movie]:
        world = self._world
        return {
            str(i + 1): Movie(
                movie_id=str(i + 1),
                title=f"Synthetic Movie {i + 1} ({year})",
                genres=(self.genre(cluster),),
                release_year=year,
            )
            for i, (cluster, year) in enumerate(
                zip(world.cluster.tolist(), world.year.tolist(), strict=True)
            )
        }

    def rating_shards(self) -> list[Shard]:
        """User ranges in whole blocks, each holding about a million ratings."""
        counts = self._world.counts
        block_ratings = np.add.reduceat(counts, np.arange(0, self.num_users, BLOCK_USERS))
        shards, first, total = [], 0, 0
        for block, ratings in enumerate(block_ratings.tolist()):
            total += ratings
            end = min(self.num_users, (block + 1) * BLOCK_USERS)
            if total >= _SHARD_RATINGS or end == self.num_users:
                shards.append(
                    Shard(f"users-{first + 1}-{end}", {"first_user": first, "end_user": end})
                )
                first, total = end, 0
        return shards

    def latent(self, first_user: int, end_user: int) -> tuple[np.ndarray, np.ndarray]:
        """The hidden structure, for tests and diagnostics.

        Returns:
          ``(affinity, movie_cluster)``: [end_user - first_user, num_clusters] float64
          affinities of users ``first_user`` (0-based) up to ``end_user``, and the
          [num_movies] int cluster of each movie (movie id ``i + 1`` at index i).
        """
        blocks = [
            self._block_rngs(b)[1]
            for b in range(first_user // BLOCK_USERS, math.ceil(end_user / BLOCK_USERS))
        ]
        start = first_user // BLOCK_USERS * BLOCK_USERS
        affinity = np.concatenate(blocks)[first_user - start : end_user - start]
        return affinity, self._world.cluster.copy()

    def _block_rngs(self, block: int) -> tuple[np.random.Generator, np.ndarray]:
        """The block's random stream, after drawing its users' affinities (returned)."""
        size = min(BLOCK_USERS, self.num_users - block * BLOCK_USERS)
        rng = np.random.default_rng([self.seed, 1, block])
        return rng, rng.standard_normal((size, self.num_clusters))

    def _block(self, block: int) -> tuple[np.ndarray, ...]:
        """One block's ratings as arrays (0-based user, 0-based movie, rating, timestamp),
        grouped by user, each user's in time order."""
        world, first = self._world, block * BLOCK_USERS
        rng, affinity = self._block_rngs(block)
        n, k = affinity.shape
        counts = world.counts[first : first + n]
        user_bias = _USER_BIAS * rng.standard_normal(n)
        start = _START + rng.integers(0, _SPAN, n)
        focus = np.exp(_CLUSTER_FOCUS * (affinity - affinity.max(axis=1, keepdims=True)))
        prefer = (1 - _EXPLORE) * focus / focus.sum(axis=1, keepdims=True) + _EXPLORE / k
        cum_prefer = np.cumsum(prefer, axis=1)

        def draw(users: np.ndarray, uniform_movies: bool) -> np.ndarray:
            if uniform_movies:
                return rng.integers(0, world.cluster.size, users.size)
            u1, u2 = rng.random(users.size), rng.random(users.size)
            cluster = np.minimum((cum_prefer[users] < u1[:, None]).sum(axis=1), k - 1)
            at = np.searchsorted(world.cluster_cdf, cluster + u2, side="right")
            return world.movies_by_cluster[np.minimum(at, world.cluster.size - 1)]

        users = np.repeat(np.arange(n), counts + counts // 4 + 4)
        movies = draw(users, uniform_movies=False)
        keep = _first_unique(users, movies, counts, world.cluster.size)
        users, movies = users[keep], movies[keep]
        for round_ in range(_TOP_UPS):
            short = counts - np.bincount(users, minlength=n)
            if not short.any():
                break
            extra = np.repeat(np.arange(n), np.where(short > 0, 2 * short + 8, 0))
            users = np.concatenate([users, extra])
            movies = np.concatenate([movies, draw(extra, uniform_movies=round_ == _TOP_UPS - 1)])
            keep = _first_unique(users, movies, counts, world.cluster.size)
            users, movies = users[keep], movies[keep]
        order = np.argsort(users, kind="stable")
        users, movies = users[order], movies[order]
        score = (
            _MEAN
            + user_bias[users]
            + world.quality[movies]
            + _AFFINITY_EFFECT * affinity[users, world.cluster[movies]]
            + _NOISE * rng.standard_normal(users.size)
        )
        ratings = np.clip(np.round(score * 2) / 2, 0.5, 5.0)
        gaps = np.floor(rng.exponential(_MEAN_GAP_SECONDS, users.size)).astype(np.int64) + 1
        elapsed = np.cumsum(gaps)
        group_start = np.searchsorted(users, np.arange(n))
        before = (elapsed - gaps)[np.minimum(group_start, max(users.size - 1, 0))]
        timestamps = start[users] + elapsed - before[users]
        return users + first, movies, ratings, timestamps

    def rating_arrays(self, first_user: int = 0, end_user: int | None = None):
        """Users ``first_user`` up to ``end_user`` (0-based; None: the last) as arrays.

        The ratings :meth:`read_ratings` streams, for code that wants millions at once (the
        benchmarks): ``(user, movie, rating, timestamp)``, users and movies 0-based (their
        ids are one more), grouped by user, each user's in time order.
        """
        end = self.num_users if end_user is None else min(end_user, self.num_users)
        blocks = range(first_user // BLOCK_USERS, math.ceil(end / BLOCK_USERS))
        columns = [np.concatenate(c) for c in zip(*(self._block(b) for b in blocks), strict=True)]
        inside = (columns[0] >= first_user) & (columns[0] < end)
        return tuple(c[inside] for c in columns)

    def read_ratings(
        self,
        shard: Shard,
        movies: Mapping[str, Movie] | None,
        users: Mapping[str, User] | None,
    ) -> Iterator[Rating | Reject]:
        """Streams users ``shard.spec["first_user"]`` (0-based) up to ``shard.spec["end_user"]``.

        A rating's ``line_number`` is its 1-based number in the shard; its ``raw_line`` is
        empty (there is no input row, and no duplicate to report). A rating of a movie or
        user missing from ``movies``/``users`` is rejected with that number and
        ``"user,movie,rating,time"``.
        """
        first, end = shard.spec["first_user"], shard.spec["end_user"]
        movie_ids = [str(i + 1) for i in range(self.num_movies)]
        known_movie = [movies is None or m in movies for m in movie_ids]
        number = 0
        for block in range(first // BLOCK_USERS, math.ceil(end / BLOCK_USERS)):
            user_index, movie_index, ratings, timestamps = self._block(block)
            inside = (user_index >= first) & (user_index < end)
            columns = (user_index[inside], movie_index[inside], ratings[inside], timestamps[inside])
            for u, m, r, t in zip(*(c.tolist() for c in columns), strict=True):
                number += 1
                user_id = str(u + 1)
                if known_movie[m] and (users is None or user_id in users):
                    yield Rating(user_id, movie_ids[m], r, t, number)
                else:
                    reason = UNKNOWN_USER if known_movie[m] else UNKNOWN_MOVIE
                    yield Reject(_FILE, number, reason, f"{user_id},{movie_ids[m]},{r},{t}")

    @classmethod
    def from_spec(cls, spec: SyntheticSpec) -> "SyntheticSource":
        return cls(
            num_users=spec.num_users,
            num_movies=spec.num_movies,
            num_ratings=spec.num_ratings,
            seed=spec.seed,
            num_clusters=spec.num_clusters,
        )

    def details(self) -> dict:
        return {
            "num_users": self.num_users,
            "num_movies": self.num_movies,
            "num_ratings": self.num_ratings,
            "seed": self.seed,
            "num_clusters": self.num_clusters,
        }


def _first_unique(users: np.ndarray, movies: np.ndarray, counts: np.ndarray, num_movies: int):
    """Indices of the first ``counts[u]`` distinct movies each user drew, in draw order.

    Args:
      users, movies: [draws] int arrays, in priority order (earlier draws win).
      counts: [users in block] wanted per user.
      num_movies: to build a (user, movie) key.

    Returns:
      [kept] int indices into the draws, grouped by user, in priority order within a user.
    """
    _, first = np.unique(users * num_movies + movies, return_index=True)
    first.sort()
    first = first[np.argsort(users[first], kind="stable")]
    grouped = users[first]
    rank = np.arange(first.size) - np.searchsorted(grouped, grouped)
    return first[rank < counts[grouped]]
