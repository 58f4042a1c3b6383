"""The joint TFRS model of movierec: retrieval towers, a rating task and a re-ranker.

Built and trained by ``trainer.run``; exported for serving by ``trainer.export``. Every table
is indexed by Transform's vocabulary indices (index == vocabulary size is the
out-of-vocabulary row).

- **Retrieval** (the two towers a ScaNN index serves). The user tower reads the user's
  history, not a user id: a per-user multinomial autoencoder (Mult-DAE, Liang et al. 2018)
  encodes the L2-normalised history (items dropped in training) with one tanh layer and
  decodes it with a softmax over the whole catalogue, trained on the multinomial
  log-likelihood of the user's movies. A low-rank EASE (``trainer.ease``) is blended in:
  each part's scores are divided by their spread over the catalogue for that user (its
  standard deviation, from the movie vectors' covariance), then weighted ``w`` and ``1 - w``.
  That keeps the blend one dot product::

      user  = [a * h(x), a, c * (x L)]      a = w / sd_dae(u),  c = (1 - w) / sd_ease(u)
      movie = [D_j, d_j, R_j]               (decoder row, decoder bias, EASE right factor)

  so a user with a history the model never saw (a new user, or ratings that arrived after
  training) is embedded at request time.
- **Ranking**: ``rating = mean + b_u + b_m + <p_u, q_m>``, trained on MSE with a penalty on
  the factor rows each rating touches; it answers ``/v1/rate``.
- **Re-ranker**: a linear model over features of each (user, candidate) — the retrieval
  score standardised over the user's candidates, the predicted rating, the movie's log
  popularity and its log retrieval position — trained on watched / not watched labels of
  the validation cut. It orders the served list only when it beats retrieval order there
  (``use_reranker``).
"""

import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from trainer import features
from trainer.config import TrainerConfig

# Input keys of the three training phases (one dataset per phase, see compute_loss).
HISTORY = "history"  # [batch, movie rows] tf.SparseTensor of 0/1
RERANK_FEATURES = "rerank_features"  # [n, NUM_RERANK_FEATURES] float32
RERANK_LABEL = "rerank_label"  # [n] float32, 1 = the user watched the candidate
NUM_RERANK_FEATURES = 4
_EPS = 1e-6


def _table(rows: int, width: int, name: str, stddev: float | None = 0.05):
    init = (
        tf.keras.initializers.TruncatedNormal(stddev=stddev)
        if stddev
        else tf.keras.initializers.Zeros()
    )
    layer = tf.keras.layers.Embedding(rows, width, embeddings_initializer=init, name=name)
    layer.build((None,))
    return layer


def _standardise(values, valid):
    """Per row of ``[batch, n]`` values: (v - mean) / std over the entries where valid."""
    weights = tf.cast(valid, tf.float32)
    count = tf.maximum(tf.reduce_sum(weights, axis=1, keepdims=True), 1.0)
    safe = tf.where(valid, values, tf.zeros_like(values))
    mean = tf.reduce_sum(safe, axis=1, keepdims=True) / count
    var = tf.reduce_sum(weights * tf.square(safe - mean), axis=1, keepdims=True) / count
    return tf.where(valid, (safe - mean) / tf.sqrt(var + _EPS), tf.zeros_like(values))


class JointModel(tfrs.Model):
    """Retrieval towers, rating task and re-ranker over one set of vocabularies.

    Args:
      num_users: user vocabulary size (without the OOV row).
      num_movies: movie vocabulary size (without the OOV row).
      movie_counts: ``[num_movies + 1]`` train ratings of each movie row.
      global_mean: mean train rating.
      config: the hyperparameters.
    """

    def __init__(
        self,
        num_users: int,
        num_movies: int,
        movie_counts: np.ndarray,
        global_mean: float,
        config: TrainerConfig,
    ):
        super().__init__()
        rows_u = num_users + features.NUM_OOV_BUCKETS
        rows_m = num_movies + features.NUM_OOV_BUCKETS
        self.config = config
        self.train_dtype = tf.as_dtype(config.train_precision())
        self.num_movie_rows = rows_m
        self.ease_rank = min(config.ease_rank, num_movies)
        hidden = config.hidden_dim
        # Retrieval: encoder row j is what movie j in a history adds to the hidden layer.
        self.encoder = _table(rows_m, hidden, "encoder")
        self.encoder_bias = _table(1, hidden, "encoder_bias", stddev=None)
        self.decoder = _table(rows_m, hidden, "decoder")
        self.decoder_bias = _table(rows_m, 1, "decoder_bias", stddev=None)
        self.ease_left = tf.Variable(tf.zeros([rows_m, self.ease_rank]), trainable=False)
        self.ease_right = tf.Variable(tf.zeros([rows_m, self.ease_rank]), trainable=False)
        self.blend_weight = tf.Variable(1.0, trainable=False)
        self.dae_covariance = tf.Variable(tf.zeros([hidden + 1, hidden + 1]), trainable=False)
        self.ease_covariance = tf.Variable(
            tf.zeros([self.ease_rank, self.ease_rank]), trainable=False
        )
        # Ranking: biases and factors.
        self.user_factors = _table(rows_u, config.embedding_dim, "user_factors")
        self.movie_factors = _table(rows_m, config.embedding_dim, "movie_factors")
        self.user_bias = _table(rows_u, 1, "user_bias", stddev=None)
        self.movie_bias = _table(rows_m, 1, "movie_bias", stddev=None)
        self.global_mean = tf.constant(global_mean, tf.float32)
        # Re-ranker.
        self.reranker = tf.keras.layers.Dense(1, name="reranker")
        self.reranker.build((None, NUM_RERANK_FEATURES))
        self.use_reranker = tf.Variable(False, trainable=False)
        self.movie_log_count = tf.constant(np.log1p(movie_counts), tf.float32)
        # Labels and predictions are [batch]: the losses' per-example axis (the last) is the
        # batch, so each returns the batch mean as one value, and SUM (what a loss called
        # under a tf.distribute strategy must use) leaves it so. train_step scales by replica.
        self.ranking_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.MeanSquaredError(reduction=tf.keras.losses.Reduction.SUM),
            metrics=[tf.keras.metrics.RootMeanSquaredError(name="rmse")],
        )
        self.rerank_task = tfrs.tasks.Ranking(
            loss=tf.keras.losses.BinaryCrossentropy(
                from_logits=True, reduction=tf.keras.losses.Reduction.SUM
            )
        )
        self.loss_means = {
            name: tf.keras.metrics.Mean(name=name)
            for name in ("retrieval_loss", "ranking_loss", "rerank_loss")
        }

    def id_tables(self) -> dict[str, tuple[tf.Variable, ...]]:
        """The trainable variables whose rows are vocabulary indices, the main table first.

        Returns:
          ``{"users": (factors, biases), "movies": (decoder, ...)}``; every table is
          ``[vocabulary size + 1, width]``.
        """
        return {
            "users": (self.user_factors.embeddings, self.user_bias.embeddings),
            "movies": (
                self.decoder.embeddings,
                self.decoder_bias.embeddings,
                self.encoder.embeddings,
                self.movie_factors.embeddings,
                self.movie_bias.embeddings,
            ),
        }

    # Retrieval towers.

    def encode(self, history: tf.SparseTensor, training: bool = False) -> tf.Tensor:
        """``[batch, movie rows]`` sparse 0/1 history -> ``[batch, hidden]`` hidden layer."""
        history = tf.sparse.reorder(history)
        rows = history.indices[:, 0]
        ids = tf.SparseTensor(history.indices, history.indices[:, 1], history.dense_shape)
        count = tf.math.unsorted_segment_sum(
            tf.ones_like(rows, tf.float32), rows, tf.cast(history.dense_shape[0], tf.int32)
        )
        weights = tf.gather(tf.math.rsqrt(tf.maximum(count, 1.0)), rows)
        if training and self.config.dropout:
            keep = tf.random.uniform(tf.shape(weights)) >= self.config.dropout
            weights = tf.where(keep, weights / (1.0 - self.config.dropout), 0.0)
        weights = tf.SparseTensor(history.indices, weights, history.dense_shape)
        summed = tf.nn.safe_embedding_lookup_sparse(
            self.encoder.embeddings, ids, weights, combiner="sum"
        )
        return tf.tanh(summed + self.encoder_bias.embeddings)

    def dae_logits(self, hidden: tf.Tensor, dtype: tf.DType = tf.float32) -> tf.Tensor:
        """``[batch, hidden]`` -> ``[batch, movie rows]`` float32 autoencoder logits.

        ``dtype``: the type the whole-catalogue matmul runs in (``tf.bfloat16`` in training
        when ``config.precision`` says so; its inputs are cast, its output is float32).
        """
        decoder = self.decoder.embeddings
        if dtype != tf.float32:
            product = tf.matmul(tf.cast(hidden, dtype), tf.cast(decoder, dtype), transpose_b=True)
            product = tf.cast(product, tf.float32)
        else:
            product = tf.matmul(hidden, decoder, transpose_b=True)
        return product + self.decoder_bias.embeddings[:, 0]

    def ease_user(self, history: tf.SparseTensor) -> tf.Tensor:
        """``[batch, movie rows]`` sparse history -> ``[batch, rank]`` ``x_u L``."""
        history = tf.sparse.reorder(history)
        ids = tf.SparseTensor(history.indices, history.indices[:, 1], history.dense_shape)
        return tf.nn.safe_embedding_lookup_sparse(self.ease_left, ids, None, combiner="sum")

    def user_vectors(self, history: tf.SparseTensor) -> tf.Tensor:
        """``[batch, movie rows]`` sparse history -> ``[batch, dim]`` retrieval embeddings."""
        hidden = self.encode(history)
        dae = tf.concat([hidden, tf.ones_like(hidden[:, :1])], axis=1)
        ease = self.ease_user(history)
        sd_dae = tf.sqrt(tf.reduce_sum(tf.matmul(dae, self.dae_covariance) * dae, axis=1))
        sd_ease = tf.sqrt(tf.reduce_sum(tf.matmul(ease, self.ease_covariance) * ease, axis=1))
        a = self.blend_weight / tf.maximum(sd_dae, _EPS)
        # A user with no history has no EASE part (and sd 0): it is left out, not blown up.
        c = tf.where(sd_ease > _EPS, (1.0 - self.blend_weight) / tf.maximum(sd_ease, _EPS), 0.0)
        return tf.concat([a[:, None] * dae, c[:, None] * ease], axis=1)

    def movie_vectors(self, movie_idx: tf.Tensor) -> tf.Tensor:
        """``[n]`` movie indices -> ``[n, dim]`` retrieval embeddings."""
        return tf.concat(
            [
                tf.gather(self.decoder.embeddings, movie_idx),
                tf.gather(self.decoder_bias.embeddings, movie_idx),
                tf.gather(self.ease_right, movie_idx),
            ],
            axis=1,
        )

    def set_ease(self, left: np.ndarray, right: np.ndarray) -> None:
        """Sets the EASE factors of the vocabulary rows (``[num_movies, rank]`` each)."""
        pad = np.zeros((self.num_movie_rows - len(left), self.ease_rank), np.float32)
        self.ease_left.assign(np.concatenate([left, pad]))
        self.ease_right.assign(np.concatenate([right, pad]))

    def set_blend(self, weight: float) -> None:
        """Sets the blend weight and the movie vectors' covariances (vocabulary rows only)."""
        n = self.num_movie_rows - features.NUM_OOV_BUCKETS
        dae = np.concatenate(
            [self.decoder.embeddings.numpy()[:n], self.decoder_bias.embeddings.numpy()[:n]], 1
        )
        ease = self.ease_right.numpy()[:n]
        self.dae_covariance.assign(np.cov(dae, rowvar=False, bias=True).astype(np.float32))
        self.ease_covariance.assign(
            np.atleast_2d(np.cov(ease, rowvar=False, bias=True)).astype(np.float32)
        )
        self.blend_weight.assign(weight)

    # Ranking.

    def predict_rating(self, user_idx: tf.Tensor, movie_idx: tf.Tensor) -> tf.Tensor:
        """``[batch]`` user and movie indices -> ``[batch]`` float32 predicted ratings."""
        p = self.user_factors(user_idx)
        q = self.movie_factors(movie_idx)
        return (
            self.global_mean
            + self.user_bias(user_idx)[:, 0]
            + self.movie_bias(movie_idx)[:, 0]
            + tf.reduce_sum(p * q, axis=1)
        )

    # Re-ranking.

    def rerank_features(self, user_idx, movie_idx, retrieval_scores):
        """Features of each candidate.

        Args:
          user_idx: ``[batch]`` int64 user indices.
          movie_idx: ``[batch, n]`` int64 candidate movie indices, best retrieval score first.
          retrieval_scores: ``[batch, n]`` float32; -inf marks no candidate.

        Returns:
          ``([batch, n, NUM_RERANK_FEATURES] float32, [batch, n] predicted ratings)``.
        """
        valid = tf.math.is_finite(retrieval_scores)
        shape = tf.shape(movie_idx)
        users = tf.reshape(tf.broadcast_to(user_idx[:, None], shape), [-1])
        rating = tf.reshape(self.predict_rating(users, tf.reshape(movie_idx, [-1])), shape)
        position = tf.cast(tf.broadcast_to(tf.range(shape[1])[None, :], shape), tf.float32)
        stacked = tf.stack(
            [
                _standardise(retrieval_scores, valid),
                rating - self.global_mean,
                tf.gather(self.movie_log_count, movie_idx),
                tf.math.log1p(position),
            ],
            axis=2,
        )
        return stacked, rating

    def rerank(self, user_idx, movie_idx, retrieval_scores):
        """The served order's scores: ``[batch, n]`` (-inf stays -inf) and predicted ratings.

        Retrieval scores pass through unchanged while ``use_reranker`` is false.
        """
        stacked, rating = self.rerank_features(user_idx, movie_idx, retrieval_scores)
        learned = self.reranker(stacked)[..., 0]
        scores = tf.where(self.use_reranker, learned, retrieval_scores)
        valid = tf.math.is_finite(retrieval_scores)
        return tf.where(valid, scores, tf.fill(tf.shape(scores), -np.inf)), rating

    # Training.

    def call(self, inputs):
        return self.predict_rating(inputs[features.USER_IDX], inputs[features.MOVIE_IDX])

    def compute_loss(self, inputs, training=False):
        """The loss of whichever phase ``inputs`` belong to (see the module docstring).

        ``{HISTORY}``: multinomial log-likelihood of each user's movies plus the L2 penalty;
        ``{user_idx, movie_idx, rating}``: MSE plus the factor penalty; ``{RERANK_FEATURES,
        RERANK_LABEL}``: binary cross-entropy of the re-ranker.
        """
        if HISTORY in inputs:
            history = inputs[HISTORY]
            hidden = self.encode(history, training)
            log_probs = tf.nn.log_softmax(self.dae_logits(hidden, self.train_dtype))
            picked = tf.gather_nd(log_probs, history.indices)
            batch = tf.cast(history.dense_shape[0], tf.float32)
            loss = -tf.reduce_sum(picked) / batch
            self.loss_means["retrieval_loss"].update_state(loss)
            penalty = tf.reduce_sum(tf.square(self.encoder.embeddings)) + tf.reduce_sum(
                tf.square(self.decoder.embeddings)
            )
            return loss + self.config.l2 * penalty
        if RERANK_FEATURES in inputs:
            logits = self.reranker(inputs[RERANK_FEATURES])[:, 0]
            loss = self.rerank_task(labels=inputs[RERANK_LABEL], predictions=logits)
            self.loss_means["rerank_loss"].update_state(loss)
            return loss
        user_idx, movie_idx = inputs[features.USER_IDX], inputs[features.MOVIE_IDX]
        rating = self.predict_rating(user_idx, movie_idx)
        loss = self.ranking_task(
            labels=inputs[features.RATING], predictions=rating, training=training
        )
        self.loss_means["ranking_loss"].update_state(loss)
        penalty = tf.reduce_mean(
            tf.reduce_sum(tf.square(self.user_factors(user_idx)), axis=1)
            + tf.reduce_sum(tf.square(self.movie_factors(movie_idx)), axis=1)
        )
        return loss + self.config.rating_l2 * penalty

    def train_step(self, inputs):
        """One step on the variables the phase's loss reaches (the others get no gradient).

        Under a ``tf.distribute`` strategy of N replicas each replica's loss (the mean over
        its 1/N of the batch) is divided by N before the gradients are summed across replicas,
        so a step is the global batch's mean gradient as on one device (``trainer.distribute``).
        """
        replicas = self.distribute_strategy.num_replicas_in_sync
        with tf.GradientTape() as tape:
            loss = self.compute_loss(inputs, training=True)
            scaled = loss / replicas if replicas > 1 else loss
        variables = self.trainable_variables
        grads = tape.gradient(scaled, variables)
        pairs = [(g, v) for g, v in zip(grads, variables, strict=True) if g is not None]
        self.optimizer.apply_gradients(pairs)
        metrics = {m.name: m.result() for m in self.metrics}
        metrics["loss"] = loss
        return metrics


def movie_counts(movie_idx: np.ndarray, num_movies: int) -> np.ndarray:
    """``[num_movies + NUM_OOV_BUCKETS]`` train ratings of each movie row."""
    return np.bincount(movie_idx, minlength=num_movies + features.NUM_OOV_BUCKETS).astype(
        np.float32
    )
