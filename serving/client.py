"""Loads the newest pushed models from a serving directory and answers queries.

``movierec recommend`` and ``movierec run`` (its closing demo) use :class:`PushedModels`; it
reads exactly what TF Serving would load: the highest version under each model's base path.
"""

import dataclasses
from pathlib import Path

import numpy as np
import tensorflow as tf

from serving import index as index_lib
from serving import push
from trainer import features


@dataclasses.dataclass(frozen=True)
class Recommendation:
    """One recommended movie."""

    movie_id: str
    title: str
    score: float
    predicted_rating: float


class PushedModels:
    """The latest pushed retrieval and ranking SavedModels of ``serving_dir``.

    Raises:
      FileNotFoundError: naming the directory when no version has been pushed.
    """

    def __init__(self, serving_dir: str | Path):
        serving_dir = Path(serving_dir)
        self.versions = {}
        paths = {}
        for name in (push.RETRIEVAL, push.RANKING):
            versions = push.list_versions(serving_dir / name)
            if not versions:
                raise FileNotFoundError(
                    f"no pushed {name} model under {serving_dir / name}; run `movierec run` first"
                )
            self.versions[name] = versions[-1]
            paths[name] = serving_dir / name / str(versions[-1])
        self.paths = paths
        self.retrieval = index_lib.load_saved_model(str(paths[push.RETRIEVAL]))
        self.ranking = tf.saved_model.load(str(paths[push.RANKING]))

    def recommend(self, user_id: str, k: int = 10) -> tuple[list[Recommendation], bool]:
        """Top-k movies for one user, with the ranking model's predicted rating of each.

        Returns:
          (recommendations best first, whether the user was known at training time).

        Raises:
          ValueError: when k is not in [1, movies the retrieval model returns].
        """
        out = self.retrieval.signatures["serving_default"](user_id=tf.constant([str(user_id)]))
        available = int(out["movie_ids"].shape[1])
        if not 1 <= k <= available:
            raise ValueError(f"k must be between 1 and {available}, got {k}")
        ids = [m.decode() for m in out["movie_ids"][0, :k].numpy()]
        titles = [t.decode() for t in out["titles"][0, :k].numpy()]
        scores = out["scores"][0, :k].numpy()
        ratings = self.predict_ratings(str(user_id), ids)
        recs = [
            Recommendation(m, t, float(s), float(r))
            for m, t, s, r in zip(ids, titles, scores, ratings, strict=True)
        ]
        return recs, bool(out["known_user"][0].numpy())

    def predict_ratings(self, user_id: str, movie_ids: list[str]) -> np.ndarray:
        """``[len(movie_ids)]`` predicted ratings of one user for the given movies."""
        fn = self.ranking.signatures[features.SIG_RATING]
        out = fn(
            **{
                features.USER_ID: tf.constant([user_id] * len(movie_ids)),
                features.MOVIE_ID: tf.constant(movie_ids),
            }
        )
        return out["rating"].numpy()
