"""Tests of the synthetic source: determinism, shard independence, its counts and structure."""

import pickle
import re

import numpy as np
import pytest

from data.records import GENRE_NAMES, UNKNOWN_MOVIE, Movie, Rating, Reject
from data.sources.base import Shard
from data.sources.synthetic import BLOCK_USERS, SyntheticSource


def _read(source, shards=None, movies=None) -> list:
    shards = source.rating_shards() if shards is None else shards
    return [r for shard in shards for r in source.read_ratings(shard, movies, None)]


def _columns(records) -> np.ndarray:
    """[n, 4] float64: user, movie, rating, timestamp."""
    return np.array(
        [(int(r.user_id), int(r.movie_id), r.rating, r.timestamp) for r in records], np.float64
    )


@pytest.fixture(scope="module")
def default_source():
    return SyntheticSource()  # 1000 users, 1700 movies, 100k ratings, seed 0, 10 clusters


@pytest.fixture(scope="module")
def default_ratings(default_source):
    return _read(default_source)


def test_counts_ranges_uniqueness_and_time_order(default_ratings):
    table = _columns(default_ratings)
    assert len(default_ratings) == 100_000  # shares are capped well above what users draw
    assert all(isinstance(r, Rating) for r in default_ratings)
    users, movies, ratings, times = table.T
    assert set(np.unique(users)) == set(range(1, 1001))  # every user rates something
    assert movies.min() >= 1 and movies.max() <= 1700
    assert set(np.unique(ratings)) <= {x / 2 for x in range(1, 11)}
    assert len({(u, m) for u, m in zip(users, movies, strict=True)}) == len(table)
    # Grouped by user, each user's timestamps strictly increasing.
    assert np.all(np.diff(users) >= 0)
    same_user = np.diff(users) == 0
    assert np.all(np.diff(times)[same_user] > 0)
    assert [r.line_number for r in default_ratings[:3]] == [1, 2, 3]


def test_deterministic_by_seed():
    first = _columns(_read(SyntheticSource(num_users=300, num_ratings=6000, seed=5)))
    again = _columns(_read(SyntheticSource(num_users=300, num_ratings=6000, seed=5)))
    other = _columns(_read(SyntheticSource(num_users=300, num_ratings=6000, seed=6)))
    np.testing.assert_array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)


def test_independent_of_shard_layout():
    source = SyntheticSource(num_users=700, num_movies=400, num_ratings=20_000, seed=1)
    whole = _read(source)
    cuts = [0, 1, 100, BLOCK_USERS, 613, 700]
    shards = [
        Shard("s", {"first_user": a, "end_user": b}) for a, b in zip(cuts, cuts[1:], strict=False)
    ]
    pieces = _read(source, shards)
    np.testing.assert_array_equal(_columns(pieces), _columns(whole))
    assert _columns(_read(source, shards[2:3]))[:, 0].tolist() == [
        u for u in _columns(whole)[:, 0].tolist() if 101 <= u <= BLOCK_USERS
    ]


def test_shards_cover_users_in_whole_blocks():
    # Only the per-user counts are computed here, not the ratings.
    source = SyntheticSource(num_users=3000, num_movies=2000, num_ratings=2_500_000, seed=2)
    shards = source.rating_shards()
    ranges = [(s.spec["first_user"], s.spec["end_user"]) for s in shards]
    assert ranges[0][0] == 0 and ranges[-1][1] == 3000
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:], strict=False))
    assert all(end % BLOCK_USERS == 0 for _, end in ranges[:-1])
    assert len(shards) == 3  # ~1M ratings each
    assert shards[0].name == f"users-1-{ranges[0][1]}"


def test_power_law_popularity(default_ratings):
    per_movie = np.bincount([int(r.movie_id) for r in default_ratings], minlength=1701)[1:]
    top_tenth = np.sort(per_movie)[::-1][:170].sum() / per_movie.sum()
    assert top_tenth > 0.4  # MovieLens 100k: 0.427


def test_ratings_follow_the_latent_affinity(default_source, default_ratings):
    affinity, cluster = default_source.latent(0, 1000)
    table = _columns(default_ratings)
    user_index, movie_index = table[:, :2].astype(np.int64).T - 1
    ratings = table[:, 2]
    liked = affinity[user_index, cluster[movie_index]]
    assert np.corrcoef(liked, ratings)[0, 1] > 0.3
    # Users watch the cluster they like best well over the 1 in 10 of a uniform choice.
    favourite = affinity.argmax(axis=1)
    assert np.mean(cluster[movie_index] == favourite[user_index]) > 0.2
    assert 3.3 < np.mean(ratings) < 3.9


def test_latent_is_the_same_for_any_range(default_source):
    whole, _ = default_source.latent(0, 1000)
    part, _ = default_source.latent(250, 700)
    np.testing.assert_array_equal(part, whole[250:700])


def test_catalogue_titles_years_and_genres(default_source):
    movies = default_source.read_movies([])
    _, cluster = default_source.latent(0, 1)
    assert list(movies) == [str(i) for i in range(1, 1701)]
    for movie_id in ("1", "850", "1700"):
        movie = movies[movie_id]
        year = int(re.fullmatch(rf"Synthetic Movie {movie_id} \((\d{{4}})\)", movie.title)[1])
        assert movie.release_year == year and 1920 <= year <= 2020
        assert movie.genres == (GENRE_NAMES[1 + cluster[int(movie_id) - 1]],)
    assert default_source.read_users([]) is None


def test_small_catalogue_caps_users_at_half_the_movies():
    source = SyntheticSource(num_users=50, num_movies=40, num_ratings=5000, seed=3, num_clusters=4)
    records = _read(source)
    per_user = np.bincount([int(r.user_id) for r in records])[1:]
    assert per_user.max() == 20  # 40 // 2, so 50 users hold at most 1000 ratings
    assert len(records) == 1000


def test_unknown_movies_are_rejected_with_their_number():
    source = SyntheticSource(num_users=3, num_movies=30, num_ratings=30, seed=0, num_clusters=3)
    full = _read(source)
    known = {str(i): Movie(str(i), "", (), 0) for i in range(1, 30)}  # not movie 30
    records = _read(source, movies=known)
    for number, (plain, checked) in enumerate(zip(full, records, strict=True), start=1):
        if plain.movie_id == "30":
            raw = f"{plain.user_id},30,{plain.rating},{plain.timestamp}"
            assert checked == Reject("synthetic", number, UNKNOWN_MOVIE, raw)
        else:
            assert checked == plain


def test_pickles_without_its_cache(default_source):
    copy = pickle.loads(pickle.dumps(default_source))
    assert copy._world_cache is None
    shard = Shard("s", {"first_user": 0, "end_user": 10})
    assert list(copy.read_ratings(shard, None, None)) == list(
        default_source.read_ratings(shard, None, None)
    )


def test_rating_arrays_are_the_streamed_ratings_as_indices():
    source = SyntheticSource(num_users=700, num_movies=400, num_ratings=20_000, seed=1)
    streamed = _columns(_read(source))
    arrays = np.stack(source.rating_arrays(), axis=1).astype(np.float64)
    arrays[:, :2] += 1  # 0-based indices; ids are one more
    np.testing.assert_array_equal(arrays, streamed)
    users, movies, _, _ = source.rating_arrays(100, BLOCK_USERS + 10)
    assert users.min() == 100 and users.max() == BLOCK_USERS + 9
    np.testing.assert_array_equal(
        movies + 1, streamed[(streamed[:, 0] > 100) & (streamed[:, 0] <= BLOCK_USERS + 10), 1]
    )
    assert source.rating_arrays(650, 10**9)[0].max() == 699  # clipped to the users
