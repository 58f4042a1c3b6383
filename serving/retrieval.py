"""The retrieval SavedModel: raw user ids in, top-k movie ids, titles and scores out.

The Pusher calls :func:`export_retrieval_model` on a blessed trained model and the full
catalogue; the index over every catalogue movie is baked into the SavedModel.
"""

import numpy as np
import tensorflow as tf

from serving import index as index_lib
from trainer import features


class RetrievalModule(tf.Module):
    """Wraps the trained model's user tower with a top-k index and a movie title table."""

    def __init__(
        self, trained, topk: tf.keras.layers.Layer, ids: np.ndarray, titles: np.ndarray, k: int
    ):
        super().__init__()
        self.trained = trained
        self.index = topk
        self.k = k
        self.titles = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(ids), tf.string), tf.constant(list(titles), tf.string)
            ),
            default_value="",
        )

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def recommend(self, user_id):
        """Top-k movies per user.

        Args:
          user_id: ``[batch]`` string user ids (unknown ids get the out-of-vocabulary user).

        Returns:
          ``scores`` ``[batch, k]`` float32 (descending), ``movie_ids`` and ``titles``
          ``[batch, k]`` string, ``known_user`` ``[batch]`` bool.
        """
        user = self.trained.user_embedding(user_id)
        scores, movie_ids = self.index(user["embedding"], k=self.k)
        return {
            "scores": scores,
            "movie_ids": movie_ids,
            "titles": self.titles.lookup(movie_ids),
            "known_user": user["known"],
        }


def movie_embeddings(trained, movie_ids: np.ndarray, batch: int = 8192) -> np.ndarray:
    """``[n]`` str movie ids -> ``[n, dim]`` float32 embeddings from the trained model."""
    fn = trained.signatures[features.SIG_MOVIE_EMBEDDING]
    parts = [
        fn(**{features.MOVIE_ID: tf.constant(list(movie_ids[lo : lo + batch]))})[
            "embedding"
        ].numpy()
        for lo in range(0, len(movie_ids), batch)
    ]
    return np.concatenate(parts)


def export_retrieval_model(
    trained_model_dir: str,
    movie_ids: np.ndarray,
    titles: np.ndarray,
    path: str,
    index_kind: str = "scann",
    k: int = 100,
) -> None:
    """Builds the index over the catalogue and saves the retrieval SavedModel to ``path``.

    Args:
      trained_model_dir: the Trainer's SavedModel (``trainer.export`` signatures).
      movie_ids: ``[num_movies]`` str ids of the whole catalogue.
      titles: ``[num_movies]`` str titles, aligned with ``movie_ids``.
      path: output directory.
      index_kind: ``"scann"`` or ``"brute_force"``.
      k: movies returned per user (capped at the catalogue size).
    """
    trained = tf.saved_model.load(trained_model_dir)
    k = min(k, len(movie_ids))
    embeddings = movie_embeddings(trained, movie_ids)
    topk = index_lib.build_index(index_kind, np.asarray(movie_ids, dtype=object), embeddings, k)
    module = RetrievalModule(trained, topk, movie_ids, titles, k)
    tf.saved_model.save(
        module,
        path,
        signatures={"serving_default": module.recommend.get_concrete_function()},
        options=index_lib.SCANN_SAVE_OPTIONS if index_kind == "scann" else None,
    )
