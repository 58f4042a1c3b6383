"""The product endpoints of ``movierec serve``: recommend, similar movies, predicted rating.

``serving.server`` parses a request, takes :attr:`ModelStore.snapshot` once and calls
:func:`recommend`, :func:`similar` or :func:`rate` with the :class:`Product` of that
snapshot; nothing here knows about HTTP beyond raising :class:`ApiError` with a status.

- recommend: ``serving.recommender`` (the one two-stage recommender the Evaluator measures):
  the retrieval model (ScaNN) returns its candidate pool (the ``k`` it was exported with,
  100 from the Pusher) without the movies of the user's history, or with them when
  ``exclude_seen`` is false; the ranking model's ``rerank`` orders the pool and the best
  ``k`` are returned. A user with no history gets the most rated movies instead
  (``"fallback": "popularity"``).
- similar: cosine similarity of the ranking (trained) model's movie embeddings, over the
  movies it was trained on; the movie itself is left out.
- rate: the ranking model's predicted rating of one (user, movie) pair.
"""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from serving import names, store
from serving.errors import ApiError, not_found  # noqa: F401 (ApiError: callers catch it)
from serving.recommender import Recommender
from serving.tf_serving import DEFAULT_SIGNATURE, LoadedModel
from serving.validation import DEFAULT_K, MAX_SIMILAR_K, check_k

POPULARITY = "popularity"
SIMILARITY = "cosine"


@dataclasses.dataclass(frozen=True)
class RetrievalView:
    """What recommend needs from one retrieval version, read once when it loads.

    Attributes:
      model: the loaded retrieval SavedModel.
      k: candidates each call returns (the most ``k`` a request may ask for).
      ids, titles: ``[num_movies]`` str catalogue; num_ratings: ``[num_movies]`` int64.
      position: movie id -> its row in the catalogue arrays.
      popular: ``[num_movies]`` rows by decreasing num_ratings (catalogue order on ties).
      popular_ids: ``[num_movies]`` the catalogue ids in that order.
    """

    model: LoadedModel
    k: int
    ids: np.ndarray
    titles: np.ndarray
    num_ratings: np.ndarray
    position: dict[str, int]
    popular: np.ndarray
    popular_ids: np.ndarray

    @classmethod
    def build(cls, model: LoadedModel) -> "RetrievalView":
        """Reads the catalogue and warms up every signature recommend calls.

        Raises:
          ValueError: if the model lacks a signature or variable (pushed before these
            existed).
        """
        _require(model, (DEFAULT_SIGNATURE, names.SIG_INCLUDING_SEEN, names.SIG_SEEN))
        missing = [v for v in names.CATALOGUE_VARIABLES if not hasattr(model.obj, v)]
        if missing:
            raise ValueError(f"no catalogue variables {missing}; {_REPUSH}")
        ids = _strings(getattr(model.obj, names.CATALOGUE_IDS))
        titles = _strings(getattr(model.obj, names.CATALOGUE_TITLES))
        num_ratings = getattr(model.obj, names.CATALOGUE_NUM_RATINGS).numpy()
        warm = tf.constant(["warm-up"])
        for name in (names.SIG_INCLUDING_SEEN, names.SIG_SEEN):
            model.signatures[name](user_id=warm)
        k = int(model.signatures[DEFAULT_SIGNATURE](user_id=warm)["movie_ids"].shape[1])
        popular = np.argsort(-num_ratings, kind="stable")
        return cls(
            model=model,
            k=k,
            ids=ids,
            titles=titles,
            num_ratings=num_ratings,
            position={movie: i for i, movie in enumerate(ids)},
            popular=popular,
            popular_ids=ids[popular],
        )


@dataclasses.dataclass(frozen=True)
class RankingView:
    """What the product endpoints need from one ranking (trained) model version.

    Attributes:
      model: the loaded trained SavedModel (``trainer.export`` signatures).
      users: user ids it was trained on.
      movies: ``[n]`` str movie ids it was trained on; position: id -> row.
      unit_embeddings: ``[n, dim]`` float32 movie embeddings scaled to unit length.
    """

    model: LoadedModel
    users: frozenset[str]
    movies: np.ndarray
    position: dict[str, int]
    unit_embeddings: np.ndarray

    @classmethod
    def build(cls, model: LoadedModel) -> "RankingView":
        """Embeds every trained movie and warms up the rating signature.

        Raises:
          ValueError: if the model lacks the signatures or vocabulary variables.
        """
        _require(model, (names.SIG_RATING, names.SIG_MOVIE_EMBEDDING, names.SIG_RERANK))
        if not (hasattr(model.obj, "user_ids") and hasattr(model.obj, "movie_ids")):
            raise ValueError(f"no user_ids/movie_ids vocabulary variables; {_REPUSH}")
        movies = _strings(model.obj.movie_ids)
        embeddings = movie_embeddings(model.obj, movies)
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        warm = tf.constant(["warm-up"])
        model.signatures[names.SIG_RATING](user_id=warm, movie_id=warm)
        model.signatures[names.SIG_RERANK](
            user_id=warm, movie_ids=tf.constant([["warm-up"]]), retrieval_scores=[[0.0]]
        )
        return cls(
            model=model,
            users=frozenset(_strings(model.obj.user_ids)),
            movies=movies,
            position={movie: i for i, movie in enumerate(movies)},
            unit_embeddings=embeddings / np.maximum(norms, 1e-12),
        )

    def ratings(self, user_id: str, movie_ids: list[str]) -> np.ndarray:
        """``[len(movie_ids)]`` float32 predicted ratings of one user."""
        fn = self.model.signatures[names.SIG_RATING]
        users = tf.constant([user_id] * len(movie_ids))
        return fn(user_id=users, movie_id=tf.constant(movie_ids))["rating"].numpy()


@dataclasses.dataclass(frozen=True)
class Product:
    """The retrieval and ranking views of one snapshot."""

    retrieval: RetrievalView
    ranking: RankingView

    def versions(self) -> dict[str, int]:
        return {
            names.RETRIEVAL: self.retrieval.model.version,
            names.RANKING: self.ranking.model.version,
        }

    def recommender(self) -> Recommender:
        """The two-stage recommender over this snapshot's models."""
        return Recommender(
            retrieve=self.retrieval.model.signatures[DEFAULT_SIGNATURE],
            retrieve_including_seen=self.retrieval.model.signatures[names.SIG_INCLUDING_SEEN],
            rerank=self.ranking.model.signatures[names.SIG_RERANK],
            rate=self.ranking.model.signatures[names.SIG_RATING],
            popular_ids=self.retrieval.popular_ids,
            k=self.retrieval.k,
        )


def open_store(
    serving_dir: str | os.PathLike, model_names: tuple[str, ...] = names.MODEL_NAMES
) -> store.ModelStore:
    """A store of the pushed models (all three by default), retrieval and ranking prepared
    for the product."""
    return store.ModelStore(
        serving_dir,
        model_names,
        prepare={names.RETRIEVAL: RetrievalView.build, names.RANKING: RankingView.build},
    )


def product_of(snapshot: store.Snapshot) -> Product:
    """The product models of a snapshot.

    Raises:
      ApiError: 503 while the retrieval or ranking model has not been loaded.
    """
    missing = [name for name in (names.RETRIEVAL, names.RANKING) if name not in snapshot.views]
    if missing:
        raise ApiError(503, f"no {' or '.join(missing)} model loaded yet; see /readyz")
    return Product(snapshot.views[names.RETRIEVAL], snapshot.views[names.RANKING])


def recommend(
    product: Product, user_id: str, k: int = DEFAULT_K, exclude_seen: bool = True
) -> dict:
    """Top-k movies for one user, as ``serving.recommender`` serves them.

    Args:
      product: the snapshot's models.
      user_id: any string; a user with no history gets the popularity fallback.
      k: movies returned, in ``[1, product.retrieval.k]``.
      exclude_seen: leave out the movies of the user's history.

    Returns:
      The response object: ``user_id``, ``known_user``, ``exclude_seen``,
      ``model_versions`` and ``recommendations`` (``movie_id``, ``title``,
      ``ranking_score`` (the served order's score), ``retrieval_score`` (null in the
      fallback), ``predicted_rating``, ``num_ratings``, ``seen``); plus ``"fallback":
      "popularity"`` for an unknown user. Fewer than k movies only when the catalogue has
      fewer unseen ones.

    Raises:
      ApiError: 400 if k is out of range.
    """
    view = product.retrieval
    check_k(k, view.k)
    served = product.recommender().recommend([user_id], k, exclude_seen)
    known = bool(served.known[0])
    response = {
        "user_id": user_id,
        "known_user": known,
        "exclude_seen": exclude_seen,
        "model_versions": product.versions(),
    }
    if not known:
        response["fallback"] = POPULARITY
    seen = set() if exclude_seen or not known else seen_movies(product, user_id)
    response["recommendations"] = [
        _item(view, movie, score, retrieval_score, rating, movie in seen)
        for movie, score, retrieval_score, rating in zip(
            served.movie_ids[0],
            served.scores[0],
            served.retrieval_scores[0],
            served.ratings[0],
            strict=True,
        )
        if movie
    ]
    return response


def seen_movies(product: Product, user_id: str) -> set[str]:
    """The movies of ``user_id``'s history, per the retrieval model's seen data."""
    out = product.retrieval.model.signatures[names.SIG_SEEN](user_id=tf.constant([user_id]))
    count = int(out["count"].numpy()[0])
    return {m.decode() for m in out["movie_ids"].numpy()[0][:count]}


def similar(product: Product, movie_id: str, k: int = DEFAULT_K) -> dict:
    """The ``k`` movies whose embeddings are most cosine-similar to ``movie_id``'s.

    Returns:
      ``movie_id``, ``title``, ``similarity`` (``"cosine"``), ``model_version`` (ranking)
      and ``similar``: ``[{movie_id, title, score}]`` by decreasing score.

    Raises:
      ApiError: 404 for a movie the catalogue or the trained model does not have; 400
        for k out of range.
    """
    ranking, catalogue = product.ranking, product.retrieval
    row = ranking.position.get(movie_id)
    if row is None:
        if movie_id in catalogue.position:
            raise not_found(
                f"movie {movie_id!r} had no ratings in training, so it has no learned "
                "embedding to compare"
            )
        raise not_found(f"unknown movie {movie_id!r}")
    check_k(k, min(MAX_SIMILAR_K, len(ranking.movies) - 1))
    scores = ranking.unit_embeddings @ ranking.unit_embeddings[row]
    scores[row] = -np.inf
    best = np.argsort(-scores, kind="stable")[:k]
    return {
        "movie_id": movie_id,
        "title": _title(catalogue, movie_id),
        "similarity": SIMILARITY,
        "model_version": ranking.model.version,
        "similar": [
            {
                "movie_id": ranking.movies[i],
                "title": _title(catalogue, ranking.movies[i]),
                "score": float(scores[i]),
            }
            for i in best
        ],
    }


def rate(product: Product, user_id: str, movie_id: str) -> dict:
    """The ranking model's predicted rating of ``movie_id`` by ``user_id``.

    Returns:
      ``user_id``, ``movie_id``, ``title``, ``rating``, ``known_user``, ``known_movie``
      (whether the model was trained on them; unknown ones get its out-of-vocabulary
      embedding) and ``model_version``.

    Raises:
      ApiError: 404 for a movie neither the catalogue nor the model has.
    """
    ranking, catalogue = product.ranking, product.retrieval
    if movie_id not in catalogue.position and movie_id not in ranking.position:
        raise not_found(f"unknown movie {movie_id!r}")
    (rating,) = ranking.ratings(user_id, [movie_id])
    return {
        "user_id": user_id,
        "movie_id": movie_id,
        "title": _title(catalogue, movie_id),
        "rating": float(rating),
        "known_user": user_id in ranking.users,
        "known_movie": movie_id in ranking.position,
        "model_version": ranking.model.version,
    }


_REPUSH = "it was pushed before `movierec serve` existed: run the pipeline again to re-push"


def _require(model: LoadedModel, signatures: tuple[str, ...]) -> None:
    missing = [s for s in signatures if s not in model.signatures]
    if missing:
        raise ValueError(f"no signatures {missing}; {_REPUSH}")


def _strings(variable) -> np.ndarray:
    return np.array([v.decode() for v in variable.numpy()], dtype=object)


def _title(view: RetrievalView, movie_id: str) -> str:
    row = view.position.get(movie_id)
    return "" if row is None else view.titles[row]


def _item(view: RetrievalView, movie_id, score, retrieval_score, rating, seen: bool) -> dict:
    row = view.position.get(movie_id)
    return {
        "movie_id": movie_id,
        "title": "" if row is None else view.titles[row],
        "ranking_score": float(score),
        "retrieval_score": None if np.isnan(retrieval_score) else float(retrieval_score),
        "predicted_rating": float(rating),
        "num_ratings": 0 if row is None else int(view.num_ratings[row]),
        "seen": seen,
    }


def movie_embeddings(trained, movie_ids: np.ndarray, batch: int = 8192) -> np.ndarray:
    """``[n]`` str movie ids -> ``[n, dim]`` float32 embeddings from the trained model."""
    fn = trained.signatures[names.SIG_MOVIE_EMBEDDING]
    parts = [
        fn(**{names.MOVIE_ID: tf.constant(list(movie_ids[lo : lo + batch]))})["embedding"].numpy()
        for lo in range(0, len(movie_ids), batch)
    ]
    return np.concatenate(parts)
