"""The rating model's optimizer: Adam whose update of a table touches only the batch's rows.

Keras's Adam, given an embedding table's sparse gradient (``tf.IndexedSlices``), still decays
both moments of every row and moves every row each step (``m.assign_add(-m * (1 - beta_1))``
and ``variable.assign_sub(...)`` over the whole table), so a step costs as much as the tables
are large: at the 5M scale shape (35,000 users x 12,000 movies) an epoch of the rating model
at 256 ratings a step took 143 to 202 s with Keras's Adam and 22 s with this one.
:class:`LazyAdam` (the rule of TensorFlow Addons' ``LazyAdam``, which this project does not
install) updates the moments and the values of the rows in the batch only, so a step's cost
follows the batch, not the vocabularies. Dense gradients (the biases of a layer, the
re-ranker) get Keras's Adam unchanged. A row's moments decay only when the row is in a batch,
which is the difference from Adam; the rating model's quality with it is measured by ``make
bench ARGS=rating_steps`` (README, Scale).
"""

import tensorflow as tf


class LazyAdam(tf.keras.optimizers.Adam):
    """Adam that updates the rows of a sparse gradient only (same arguments as Adam)."""

    def update_step(self, gradient, variable):
        if not isinstance(gradient, tf.IndexedSlices):
            return super().update_step(gradient, variable)
        # Keras has summed duplicate indices by now (Optimizer._deduplicate_sparse_grad).
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        lr = tf.cast(self.learning_rate, dtype)
        alpha = lr * tf.sqrt(1 - tf.pow(beta_2, step)) / (1 - tf.pow(beta_1, step))
        key = self._var_key(variable)
        m = self._momentums[self._index_dict[key]]
        v = self._velocities[self._index_dict[key]]
        rows, g = gradient.indices, gradient.values
        m_rows = beta_1 * tf.gather(m, rows) + (1 - beta_1) * g
        v_rows = beta_2 * tf.gather(v, rows) + (1 - beta_2) * tf.square(g)
        m.scatter_update(tf.IndexedSlices(m_rows, rows))
        v.scatter_update(tf.IndexedSlices(v_rows, rows))
        step_rows = alpha * m_rows / (tf.sqrt(v_rows) + self.epsilon)
        variable.scatter_sub(tf.IndexedSlices(step_rows, rows))
