"""The TFRS multitask tutorial's joint model, as the baseline of the Trainer benchmark.

Reproduces "Multi-task recommenders" (tensorflow.org/recommenders): 32-dim user and movie
embeddings, a 256-128-1 rating MLP, a Retrieval task with FactorizedTopK metrics over every
movie, Adagrad(0.1), batch 8192, 3 epochs, retrieval and rating weights 1/1. It works on the
same vocabulary indices as our model so both read identical inputs.
"""

import tensorflow as tf
import tensorflow_recommenders as tfrs

from trainer import features


class TutorialModel(tfrs.models.Model):
    def __init__(self, num_users: int, num_movies: int, compute_top_k: bool = True):
        super().__init__()
        dim = 32
        self.user_model = tf.keras.Sequential([tf.keras.layers.Embedding(num_users + 1, dim)])
        self.movie_model = tf.keras.Sequential([tf.keras.layers.Embedding(num_movies + 1, dim)])
        self.rating_model = tf.keras.Sequential(
            [
                tf.keras.layers.Dense(256, activation="relu"),
                tf.keras.layers.Dense(128, activation="relu"),
                tf.keras.layers.Dense(1),
            ]
        )
        metrics = None
        if compute_top_k:
            candidates = tf.data.Dataset.range(num_movies + 1).batch(128).map(self.movie_model)
            metrics = tfrs.metrics.FactorizedTopK(candidates=candidates)
        self.retrieval_task = tfrs.tasks.Retrieval(metrics=metrics)
        self.rating_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(),
            metrics=[tf.keras.metrics.RootMeanSquaredError()],
        )

    def predict_rating(self, user_idx, movie_idx):
        u, m = self.user_model(user_idx), self.movie_model(movie_idx)
        return self.rating_model(tf.concat([u, m], axis=1))[:, 0]

    def compute_loss(self, inputs, training=False):
        u = self.user_model(inputs[features.USER_IDX])
        m = self.movie_model(inputs[features.MOVIE_IDX])
        rating = self.rating_model(tf.concat([u, m], axis=1))[:, 0]
        rating_loss = self.rating_task(labels=inputs[features.RATING], predictions=rating)
        retrieval_loss = self.retrieval_task(u, m)
        return rating_loss + retrieval_loss


def train_tutorial(train_columns, num_users, num_movies, epochs=3, seed=42):
    """Trains the tutorial model as the tutorial does; returns the model."""
    tf.keras.utils.set_random_seed(seed)
    model = TutorialModel(num_users, num_movies)
    model.compile(optimizer=tf.keras.optimizers.Adagrad(learning_rate=0.1))
    n = len(train_columns[features.RATING])
    ds = tf.data.Dataset.from_tensor_slices(train_columns).shuffle(n, seed=seed).batch(8192).cache()
    model.fit(ds, epochs=epochs, verbose=0)
    return model
