"""serving.service and serving.validation without HTTP: recommend, similar and rate against
the SavedModels called directly, the popularity fallback against counts made here, and
request validation."""

import numpy as np
import pytest
import tensorflow as tf

from serving import loading, names, service, store, validation
from serving.errors import ApiError

K = 7
USERS = [f"u{i}" for i in range(0, 40, 4)]


@pytest.fixture(scope="module")
def direct(staged):
    """The staged SavedModels, loaded apart from the server."""
    return {
        names.RANKING: tf.saved_model.load(str(staged.models[names.RANKING])),
        names.RETRIEVAL: loading.load_saved_model(str(staged.models[names.RETRIEVAL])),
    }


def _ratings(direct, user: str, movies: list[str]) -> np.ndarray:
    fn = direct[names.RANKING].signatures["serving_default"]
    return fn(user_id=tf.constant([user] * len(movies)), movie_id=tf.constant(movies))[
        "rating"
    ].numpy()


def _candidates(direct, user: str, signature: str) -> dict[str, float]:
    out = direct[names.RETRIEVAL].signatures[signature](user_id=tf.constant([user]))
    ids, scores = out["movie_ids"][0].numpy(), out["scores"][0].numpy()
    return {m.decode(): float(s) for m, s in zip(ids, scores, strict=True) if np.isfinite(s)}


def _reranked(direct, user: str, candidates: dict[str, float]):
    """The ranking model's rerank scores and ratings of one user's pool, called directly."""
    out = direct[names.RANKING].signatures[names.SIG_RERANK](
        user_id=tf.constant([user]),
        movie_ids=tf.constant([list(candidates)]),
        retrieval_scores=tf.constant([list(candidates.values())], tf.float32),
    )
    return out["scores"].numpy()[0], out["ratings"].numpy()[0]


def test_recommend_serves_the_pool_in_the_ranking_models_order(product, staged, direct):
    for user in USERS:
        got = service.recommend(product, user, k=K)
        recs = got["recommendations"]
        ids = [r["movie_id"] for r in recs]
        assert len(ids) == K == len(set(ids))
        assert not staged.seen[user] & set(ids)
        candidates = _candidates(direct, user, "serving_default")
        assert len(candidates) == 30  # the whole pool: enough unseen movies for everyone
        pool = list(candidates)
        scores, ratings = _reranked(direct, user, candidates)
        # Equal scores keep retrieval order.
        best = np.argsort(-scores, kind="stable")[:K]
        assert ids == [pool[i] for i in best]
        np.testing.assert_allclose([r["ranking_score"] for r in recs], scores[best], rtol=1e-6)
        np.testing.assert_allclose([r["predicted_rating"] for r in recs], ratings[best], rtol=1e-6)
        np.testing.assert_allclose(ratings, _ratings(direct, user, pool), rtol=1e-6)
        np.testing.assert_allclose(
            [r["retrieval_score"] for r in recs], [candidates[m] for m in ids], rtol=1e-6
        )
        assert [r["title"] for r in recs] == [staged.titles[m] for m in ids]
        assert [r["num_ratings"] for r in recs] == [staged.num_ratings[m] for m in ids]
        assert not any(r["seen"] for r in recs)
        assert got["known_user"] is True and "fallback" not in got
        assert got["model_versions"] == {"retrieval": 1, "ranking": 1}


def test_exclude_seen_false_reranks_the_pool_with_seen_movies(product, staged, direct):
    seen_returned = 0
    for user in USERS:
        got = service.recommend(product, user, k=K, exclude_seen=False)
        candidates = _candidates(direct, user, names.SIG_INCLUDING_SEEN)
        pool = list(candidates)
        scores, _ = _reranked(direct, user, candidates)
        ids = [r["movie_id"] for r in got["recommendations"]]
        assert ids == [pool[i] for i in np.argsort(-scores, kind="stable")[:K]]
        assert [r["seen"] for r in got["recommendations"]] == [m in staged.seen[user] for m in ids]
        seen_returned += sum(m in staged.seen[user] for m in ids)
    assert seen_returned > 0  # the trained model scores some rated movies highly


def test_unknown_user_gets_the_most_rated_movies(product, staged, direct):
    got = service.recommend(product, "stranger", k=5)
    # Most ratings first; equal counts keep catalogue order.
    order = sorted(staged.catalogue, key=lambda m: (-staged.num_ratings[m], int(m[1:])))[:5]
    recs = got["recommendations"]
    assert got["fallback"] == "popularity" and got["known_user"] is False
    assert [r["movie_id"] for r in recs] == order
    assert [r["num_ratings"] for r in recs] == [staged.num_ratings[m] for m in order]
    assert all(r["retrieval_score"] is None for r in recs)
    np.testing.assert_allclose(
        [r["ranking_score"] for r in recs], _ratings(direct, "stranger", order), rtol=1e-6
    )


def test_k_is_bounded_by_the_retrieval_pool(product):
    assert len(service.recommend(product, "u1", k=30)["recommendations"]) == 30
    for k in (0, 31):
        with pytest.raises(ApiError, match="between 1 and 30") as err:
            service.recommend(product, "u1", k=k)
        assert err.value.status == 400


def test_retrieval_model_carries_seen_movies_and_popularity(staged, direct):
    model = direct[names.RETRIEVAL]
    users = ["u0", "u5", "stranger"]
    out = model.signatures[names.SIG_SEEN](user_id=tf.constant(users))
    for row, user in enumerate(users):
        count = int(out["count"][row])
        assert count == len(staged.seen.get(user, ()))
        assert {m.decode() for m in out["movie_ids"][row, :count].numpy()} == staged.seen.get(
            user, set()
        )
    ids = [m.decode() for m in model.catalogue_movie_ids.numpy()]
    assert ids == staged.catalogue
    assert model.catalogue_num_ratings.numpy().tolist() == [staged.num_ratings[m] for m in ids]
    assert [t.decode() for t in model.catalogue_titles.numpy()] == [staged.titles[m] for m in ids]


def test_similar_movies_are_the_nearest_by_cosine(product, staged, direct):
    vocab = [f"m{i}" for i in range(120)]
    fn = direct[names.RANKING].signatures["movie_embedding"]
    emb = fn(movie_id=tf.constant(vocab))["embedding"].numpy()
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    for movie in ("m0", "m3", "m77"):
        got = service.similar(product, movie, k=6)
        i = vocab.index(movie)
        cosine = unit @ unit[i]
        cosine[i] = -np.inf
        expected = np.argsort(-cosine)[:6]
        assert [s["movie_id"] for s in got["similar"]] == [vocab[j] for j in expected]
        np.testing.assert_allclose(
            [s["score"] for s in got["similar"]], cosine[expected], atol=1e-5
        )
        assert [s["title"] for s in got["similar"]] == [staged.titles[vocab[j]] for j in expected]
        assert got["similarity"] == "cosine" and got["title"] == staged.titles[movie]


def test_similar_rejects_unknown_movies_and_bad_k(product):
    for movie, message in (("zzz", "unknown movie 'zzz'"), ("m121", "no ratings in training")):
        with pytest.raises(ApiError, match=message) as err:
            service.similar(product, movie)
        assert err.value.status == 404
    with pytest.raises(ApiError, match="between 1 and 100") as err:
        service.similar(product, "m1", k=101)
    assert err.value.status == 400


def test_rate_is_the_ranking_models_prediction(product, staged, direct):
    for user, movie, known_user, known_movie in (
        ("u3", "m10", True, True),
        ("stranger", "m10", False, True),
        ("u3", "m121", True, False),  # in the catalogue, never rated: the OOV movie row
    ):
        got = service.rate(product, user, movie)
        assert got["rating"] == pytest.approx(float(_ratings(direct, user, [movie])[0]), rel=1e-6)
        assert (got["known_user"], got["known_movie"]) == (known_user, known_movie)
        assert got["title"] == staged.titles[movie]
    with pytest.raises(ApiError, match="unknown movie 'nope'") as err:
        service.rate(product, "u3", "nope")
    assert err.value.status == 404


@pytest.mark.parametrize(
    "body, message",
    [
        ([], "must be a JSON object, got an array"),
        ({"k": 3}, "missing required field 'user_id'"),
        ({"user_id": 42}, "'user_id' must be a string"),
        ({"user_id": None}, "got null"),
        ({"user_id": "u1", "k": "3"}, "'k' must be an integer, got a string"),
        ({"user_id": "u1", "k": True}, "'k' must be an integer, got a boolean"),
        ({"user_id": "u1", "k": 2.0}, "'k' must be an integer, got a number"),
        ({"user_id": "u1", "k": 0}, "k must be between 1 and 30, got 0"),
        ({"user_id": "u1", "k": 31}, "k must be between 1 and 30, got 31"),
        ({"user_id": "u1", "exclude_seen": "no"}, "'exclude_seen' must be true or false"),
        ({"user_id": "u1", "kk": 1}, "unknown field(s) ['kk']"),
        ({"user_id": ""}, "1 to 256 characters"),
        ({"user_id": "x" * 257}, "1 to 256 characters"),
        ({"user_id": "\ud800"}, "not valid Unicode"),
    ],
)
def test_parse_recommend_rejects_bad_bodies(body, message):
    with pytest.raises(ApiError) as err:
        validation.parse_recommend(body, max_k=30)
    assert err.value.status == 400
    assert message in err.value.message


def test_parse_requests_defaults_and_decoding():
    assert validation.parse_recommend({"user_id": "u1"}, 30) == ("u1", 10, True)
    assert validation.parse_recommend({"user_id": "u1", "k": 3, "exclude_seen": False}, 30) == (
        "u1",
        3,
        False,
    )
    assert validation.parse_rate({"user_id": "u1", "movie_id": "m2"}) == ("u1", "m2")
    assert validation.parse_similar("m%C3%A9", "k=3") == ("mé", 3)
    assert validation.parse_similar("m1", "") == ("m1", 10)
    for segment, query in (("m1", "k=abc"), ("m1", "k=1&k=2"), ("m1", "k=-1"), ("%ff", "")):
        with pytest.raises(ApiError) as err:
            validation.parse_similar(segment, query)
        assert err.value.status == 400


def test_product_endpoints_wait_for_both_models():
    with pytest.raises(ApiError, match="no retrieval or ranking model loaded") as err:
        service.product_of(store.Snapshot({}, {}))
    assert err.value.status == 503
