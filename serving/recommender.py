"""The one recommender: retrieve, exclude seen, re-rank, cut to k, fall back for unknown users.

Every list movierec hands out comes from :meth:`Recommender.recommend`: ``POST
/v1/recommend`` (``serving.service``), ``movierec recommend`` and the closing demo of
``movierec run`` (through the same service), and the Evaluator, which scores exactly these
lists over the servable artefacts before anything is pushed. So the numbers that bless a
model are the numbers of what users receive.

The stages, for a batch of users:

1. the retrieval SavedModel (ScaNN or brute force over the whole catalogue) returns its
   candidates, the user's seen movies already removed (``serving_default``) or not
   (``recommend_including_seen``), best retrieval score first; ``-inf`` pads a row whose
   user has seen nearly everything;
2. the ranking SavedModel's ``rerank`` signature scores the candidates for the served
   order. It is the learned re-ranker when that beat retrieval order on the Trainer's
   validation cut, else the retrieval score itself (``trainer.model``);
3. the best ``k`` by that score are served, ties in retrieval order;
4. a user the retrieval model has no history for gets the most rated movies, with the
   ranking model's predicted ratings (``fallback``).
"""

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from serving import names

DEFAULT_SIGNATURE = "serving_default"


@dataclasses.dataclass(frozen=True)
class Served:
    """The lists served to a batch of users.

    Attributes:
      user_ids: ``[batch]`` the users asked for.
      known: ``[batch]`` bool, the retrieval model has a history for the user.
      movie_ids: ``[batch, k]`` object, the served movies best first ("" pads a short list).
      scores: ``[batch, k]`` float32, the served order's scores (-inf pads).
      retrieval_scores: ``[batch, k]`` float32 (NaN for a fallback row and pads).
      ratings: ``[batch, k]`` float32 predicted ratings (NaN pads).
      candidates: ``[batch, n]`` object, the retrieval stage's candidates in retrieval order
        ("" pads; a fallback row holds the popularity order).
    """

    user_ids: list[str]
    known: np.ndarray
    movie_ids: np.ndarray
    scores: np.ndarray
    retrieval_scores: np.ndarray
    ratings: np.ndarray
    candidates: np.ndarray

    def fallback(self) -> np.ndarray:
        """``[batch]`` bool, the row is the popularity fallback."""
        return ~self.known


def _strings(values: np.ndarray) -> np.ndarray:
    return (
        np.vectorize(lambda v: v.decode(), otypes=[object])(values)
        if values.size
        else (values.astype(object))
    )


@dataclasses.dataclass(frozen=True)
class Recommender:
    """The two stages over one retrieval and one ranking SavedModel.

    Attributes:
      retrieve: retrieval signature, ``user_id`` -> ``scores``, ``movie_ids``,
        ``known_user`` (seen movies excluded).
      retrieve_including_seen: the same with seen movies allowed.
      rerank: ranking signature ``rerank(user_id, movie_ids, retrieval_scores)``.
      rate: ranking signature ``serving_default(user_id, movie_id)``.
      popular_ids: ``[num_movies]`` catalogue ids, most rated first.
      k: candidates the retrieval model returns, the most a request may ask for.
    """

    retrieve: Callable
    retrieve_including_seen: Callable
    rerank: Callable
    rate: Callable
    popular_ids: np.ndarray
    k: int

    @classmethod
    def from_saved_models(cls, retrieval, ranking) -> "Recommender":
        """Builds the recommender over loaded SavedModels (``tf.saved_model.load`` objects).

        Raises:
          ValueError: naming what a model lacks (pushed before these signatures existed).
        """
        missing = [
            s
            for s in (DEFAULT_SIGNATURE, names.SIG_INCLUDING_SEEN)
            if s not in retrieval.signatures
        ] + [s for s in (names.SIG_RERANK, DEFAULT_SIGNATURE) if s not in ranking.signatures]
        absent = [v for v in names.CATALOGUE_VARIABLES if not hasattr(retrieval, v)]
        if missing or absent:
            raise ValueError(
                f"no signatures {missing} / catalogue variables {absent}: the models were "
                "pushed by an older movierec; run the pipeline again to push new ones"
            )
        ids = _strings(getattr(retrieval, names.CATALOGUE_IDS).numpy())
        counts = getattr(retrieval, names.CATALOGUE_NUM_RATINGS).numpy()
        warm = tf.constant(["warm-up"])
        out = retrieval.signatures[DEFAULT_SIGNATURE](user_id=warm)
        return cls(
            retrieve=retrieval.signatures[DEFAULT_SIGNATURE],
            retrieve_including_seen=retrieval.signatures[names.SIG_INCLUDING_SEEN],
            rerank=ranking.signatures[names.SIG_RERANK],
            rate=ranking.signatures[DEFAULT_SIGNATURE],
            popular_ids=ids[np.argsort(-counts, kind="stable")],
            k=int(out["movie_ids"].shape[1]),
        )

    def recommend(self, user_ids: Sequence[str], k: int, exclude_seen: bool = True) -> Served:
        """The served top-k of each user.

        Args:
          user_ids: ``[batch]`` user ids (any strings).
          k: list length, in ``[1, self.k]``.
          exclude_seen: leave out the movies of each user's history.

        Returns:
          The :class:`Served` lists.

        Raises:
          ValueError: if k is out of range or no user is given.
        """
        if not user_ids:
            raise ValueError("no user to recommend for")
        if not 1 <= k <= self.k:
            raise ValueError(f"k must be between 1 and {self.k}, got {k}")
        users = tf.constant([str(u) for u in user_ids])
        retrieve = self.retrieve if exclude_seen else self.retrieve_including_seen
        out = retrieve(user_id=users)
        known = out["known_user"].numpy()
        cand_scores = out["scores"].numpy()
        cand_ids = out["movie_ids"]
        reranked = self.rerank(user_id=users, movie_ids=cand_ids, retrieval_scores=cand_scores)
        cand_ids = _strings(cand_ids.numpy())
        cand_ids[~np.isfinite(cand_scores)] = ""
        served_scores = reranked["scores"].numpy()
        ratings = reranked["ratings"].numpy()
        order = np.argsort(-served_scores, axis=1, kind="stable")[:, :k]
        scores = np.take_along_axis(served_scores, order, axis=1)
        movie_ids = np.take_along_axis(cand_ids, order, axis=1)
        retrieval_scores = np.take_along_axis(cand_scores, order, axis=1)
        ratings = np.take_along_axis(ratings, order, axis=1)
        pad = ~np.isfinite(scores)
        movie_ids[pad] = ""
        retrieval_scores = np.where(pad, np.nan, retrieval_scores).astype(np.float32)
        ratings = np.where(pad, np.nan, ratings).astype(np.float32)
        if not known.all():
            self._fall_back(users, ~known, k, movie_ids, scores, retrieval_scores, ratings)
            width = cand_ids.shape[1]
            cand_ids[~known] = self.popular_ids[:width]
        return Served(
            user_ids=[str(u) for u in user_ids],
            known=known,
            movie_ids=movie_ids,
            scores=scores,
            retrieval_scores=retrieval_scores,
            ratings=ratings,
            candidates=cand_ids,
        )

    def _fall_back(self, users, rows, k, movie_ids, scores, retrieval_scores, ratings) -> None:
        """Fills the unknown users' rows with the most rated movies, in place."""
        popular = self.popular_ids[:k]
        n = len(popular)
        count = int(rows.sum())
        rated = (
            self.rate(
                user_id=tf.repeat(tf.boolean_mask(users, rows), n),
                movie_id=tf.constant(np.tile(popular, count).astype(str)),
            )["rating"]
            .numpy()
            .reshape(count, n)
        )
        movie_ids[rows] = ""
        movie_ids[rows, :n] = popular
        scores[rows] = -np.inf
        scores[rows, :n] = rated
        retrieval_scores[rows] = np.nan
        ratings[rows] = np.nan
        ratings[rows, :n] = rated
