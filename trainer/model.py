"""The joint TFRS retrieval + ranking model (user tower, movie tower, rating MLP).

Built by ``trainer.run.run_fn``; exported for serving by ``trainer.export``. Towers work on
vocabulary indices from Transform (index == vocabulary size is the out-of-vocabulary row).
"""

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from trainer import features
from trainer.config import TrainerConfig


def _tower(num_rows: int, dim: int, l2: float, name: str) -> tf.keras.Model:
    """An id tower: ``[batch]`` int64 indices -> ``[batch, dim]`` float32 embeddings."""
    return tf.keras.Sequential(
        [
            tf.keras.layers.Embedding(
                num_rows,
                dim,
                embeddings_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.05),
                embeddings_regularizer=tf.keras.regularizers.l2(l2) if l2 else None,
            )
        ],
        name=name,
    )


class JointModel(tfrs.Model):
    """Two towers shared by a Retrieval task and a Ranking task.

    The predicted rating is ``global_mean + user_bias + movie_bias + mlp([u, m])``: the bias
    terms carry what a user+item bias baseline knows, the MLP what the embeddings add. The
    retrieval loss is an in-batch softmax with a log-frequency correction, so frequent movies
    are not over-penalised for being frequent negatives.

    Args:
      num_users: user vocabulary size (without the OOV row).
      num_movies: movie vocabulary size (without the OOV row).
      movie_log_frequency: ``[num_movies + 1]`` log probability of each movie in the train
        split (sampling correction of the retrieval task).
      global_mean: mean train rating.
      config: the hyperparameters.
    """

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        movie_log_frequency: np.ndarray,
        global_mean: float,
        config: TrainerConfig,
    ):
        super().__init__()
        rows_u = num_users + features.NUM_OOV_BUCKETS
        rows_m = num_movies + features.NUM_OOV_BUCKETS
        self.config = config
        self.user_tower = _tower(rows_u, config.embedding_dim, config.l2, "user_tower")
        self.movie_tower = _tower(rows_m, config.embedding_dim, config.l2, "movie_tower")
        self.user_bias = tf.keras.layers.Embedding(rows_u, 1, embeddings_initializer="zeros")
        self.movie_bias = tf.keras.layers.Embedding(rows_m, 1, embeddings_initializer="zeros")
        self.global_mean = tf.constant(global_mean, tf.float32)
        self.rating_mlp = tf.keras.Sequential(
            [tf.keras.layers.Dense(u, activation="relu") for u in config.rating_hidden_units]
            + [tf.keras.layers.Dense(1)],
            name="rating_mlp",
        )
        # Built up front: with ranking_weight 0 it is never called, but Keras still asks it
        # for its variables at every step.
        self.rating_mlp.build((None, 2 * config.embedding_dim))
        self.movie_log_frequency = tf.constant(movie_log_frequency, tf.float32)
        # No factorized top-k metrics here: over the whole catalogue they dominate training
        # time; the Evaluator computes them once on the eval split.
        self.retrieval_task = tfrs.tasks.Retrieval(
            temperature=config.temperature, remove_accidental_hits=True
        )
        # Epoch means of the losses (Keras reports only the last batch's total loss).
        self.loss_means = {
            name: tf.keras.metrics.Mean(name=name)
            for name in ("epoch_loss", "retrieval_loss", "ranking_loss")
        }
        self.ranking_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
        )

    def id_tables(self) -> dict[str, tuple[tf.Variable, tf.Variable]]:
        """The variables whose rows are vocabulary indices, tower embedding first.

        Returns:
          ``{"users": (embeddings [rows_u, dim], biases [rows_u, 1]), "movies": (...)}``.
          The layers must be built (the model called once).
        """
        return {
            "users": (self.user_tower.layers[0].embeddings, self.user_bias.embeddings),
            "movies": (self.movie_tower.layers[0].embeddings, self.movie_bias.embeddings),
        }

    def predict_rating(self, user_idx, movie_idx, user_emb=None, movie_emb=None):
        """Predicted ratings.

        Args:
          user_idx: ``[batch]`` int64 user indices.
          movie_idx: ``[batch]`` int64 movie indices.
          user_emb: optional ``[batch, dim]`` precomputed user embeddings.
          movie_emb: optional ``[batch, dim]`` precomputed movie embeddings.

        Returns:
          ``[batch]`` float32 ratings.
        """
        if user_emb is None:
            user_emb = self.user_tower(user_idx)
        if movie_emb is None:
            movie_emb = self.movie_tower(movie_idx)
        mlp = self.rating_mlp(tf.concat([user_emb, movie_emb], axis=1))
        rating = (
            self.global_mean
            + self.user_bias(user_idx)[:, 0]
            + self.movie_bias(movie_idx)[:, 0]
            + mlp[:, 0]
        )
        return rating

    def call(self, inputs):
        user_idx = inputs[features.USER_IDX]
        movie_idx = inputs[features.MOVIE_IDX]
        return self.predict_rating(user_idx, movie_idx)

    def compute_loss(self, inputs, training=False):
        user_idx = inputs[features.USER_IDX]
        movie_idx = inputs[features.MOVIE_IDX]
        user_emb = self.user_tower(user_idx)
        movie_emb = self.movie_tower(movie_idx)
        loss = tf.constant(0.0)
        if self.config.retrieval_weight:
            sampling_probability = (
                tf.exp(tf.gather(self.movie_log_frequency, movie_idx))
                if self.config.sampling_correction
                else None
            )
            retrieval_loss = self.retrieval_task(
                user_emb,
                movie_emb,
                candidate_sampling_probability=sampling_probability,
                candidate_ids=movie_idx,
                compute_metrics=False,
            )
            self.loss_means["retrieval_loss"].update_state(retrieval_loss)
            loss += self.config.retrieval_weight * retrieval_loss
        if self.config.ranking_weight:
            rating = self.predict_rating(user_idx, movie_idx, user_emb, movie_emb)
            ranking_loss = self.ranking_task(
                labels=inputs[features.RATING], predictions=rating, training=training
            )
            self.loss_means["ranking_loss"].update_state(ranking_loss)
            loss += self.config.ranking_weight * ranking_loss
        self.loss_means["epoch_loss"].update_state(loss)
        return loss


def movie_log_frequency(movie_idx: np.ndarray, num_movies: int) -> np.ndarray:
    """Log probability of each movie row among the train examples (add-one smoothed).

    Args:
      movie_idx: ``[num_examples]`` int64 movie indices of the train split.
      num_movies: movie vocabulary size (without the OOV row).

    Returns:
      ``[num_movies + NUM_OOV_BUCKETS]`` float32 log probabilities.
    """
    counts = np.bincount(movie_idx, minlength=num_movies + features.NUM_OOV_BUCKETS) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)
