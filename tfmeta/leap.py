"""Leap (Flennerhag et al., 2019): the pull-forward meta-gradient."""

import keras
import tensorflow as tf

from tfmeta.meta_learner import MetaLearner

METRICS = {"length": 1, "energy": 2}


class Leap(MetaLearner):
    """Leap: minimizes the expected length (or energy) of the task's gradient
    path on the loss surface (eq. 6) by the pull-forward meta-gradient of
    eq. 8, with the Jacobians approximated by the identity, accumulated on the
    fly while each task trains:

        grad = -sum_i (df_i grad f(theta_i) + dtheta_i) / ||dgamma_i||^(2-p)

    with ``dtheta_i = theta_{i+1} - theta_i``, ``df_i = f(theta_{i+1}) -
    f(theta_i)`` and ``||dgamma_i||^2 = ||dtheta_i||^2 + df_i^2``, averaged
    over the meta-batch. Eq. 8's constant factor ``p`` is dropped, as in the
    authors' code, so the paper's meta learning rates carry over; with
    ``metric="energy"``, no loss and no stabilizer the meta-gradient is then
    exactly Reptile's, ``theta_0 - theta_K``.

    Args:
      metric: ``"length"`` (p=1, the paper's default) or ``"energy"`` (p=2).
      loss_in_manifold: include the loss in the task manifold (``df_i`` terms);
        without it the path lives in parameter space only.
      stabilizer: replace ``df_i`` by ``-|df_i|`` (section 2.3), so the
        meta-gradient never follows an ascent direction.
    """

    def __init__(self, learner, metric="length", loss_in_manifold=True,
                 stabilizer=True, **kwargs):
        if metric not in METRICS:
            raise ValueError(
                f"Unknown Leap metric {metric!r}; use one of {sorted(METRICS)}.")
        super().__init__(learner, **kwargs)
        self.metric = metric
        self.loss_in_manifold = bool(loss_in_manifold)
        self.stabilizer = bool(stabilizer)
        self.path_length_tracker = keras.metrics.Mean(name="path_length")

    def get_config(self):
        return dict(super().get_config(), metric=self.metric,
                    loss_in_manifold=self.loss_in_manifold,
                    stabilizer=self.stabilizer)

    def extra_metrics(self):
        return {"path_length": self.path_length_tracker}

    def pull_forward_increment(self, state, i, theta, theta_next, loss,
                               loss_next, grads):
        """Adds segment ``i``'s term of eq. 8 to ``(meta_grad, path_length)``;
        ``path_length`` accumulates ``d_p`` (eq. 3)."""
        acc, length = state
        p = METRICS[self.metric]
        d_theta = [b - a for a, b in zip(theta, theta_next)]
        sq_norm = tf.add_n([tf.reduce_sum(tf.square(d)) for d in d_theta])
        d_f = tf.zeros([], sq_norm.dtype)
        if self.loss_in_manifold:
            d_f = tf.cast(loss_next - loss, sq_norm.dtype)
            sq_norm += tf.square(d_f)
            if self.stabilizer:
                d_f = -tf.abs(d_f)
        if p == 1:
            norm = tf.sqrt(sq_norm)
            scale = tf.math.divide_no_nan(1.0, norm)
            segment = norm
        else:
            scale, segment = tf.ones([], sq_norm.dtype), sq_norm
        acc = [a - scale * (d_f * g + d)
               for a, g, d in zip(acc, grads, d_theta)]
        return acc, length + segment

    def flat_hook_state(self, params):
        """Initial state of ``_flat_increment``: a zero flat accumulator and
        path length 0."""
        flat = _flatten(params)
        return [tf.zeros_like(flat)], tf.zeros([], flat.dtype)

    def _flat_increment(self, state, i, theta, theta_next, loss, loss_next,
                        grads):
        """``pull_forward_increment`` on all parameters as one flat vector:
        eq. 8 does not depend on how the parameters are split into tensors,
        and one accumulator instead of one per tensor saves the inner loop
        most of the ops the hook would add to every step. (Carrying the
        flattened theta_{i+1} to the next step instead of flattening it
        again saves 7 ops but adds a loop variable, whose control-flow ops
        cost as much: measured no faster.)"""
        return self.pull_forward_increment(
            state, i, [_flatten(theta)], [_flatten(theta_next)], loss,
            loss_next, [_flatten(grads)])

    def task_meta_gradient(self, params, nontrainable, task, seed):
        result = self._adapt_task(
            params, nontrainable, task["support_x"], task["support_y"],
            self.inner_steps, seed, hook=self._flat_increment,
            hook_state=self.flat_hook_state(params))
        (flat,), length = result.hook_state
        grads = [tf.reshape(g, tf.shape(p)) for g, p in zip(
            tf.split(flat, [tf.size(p) for p in params]), params)]
        loss, pred = self._query_loss(result.params, result.nontrainable, task)
        logs = {"loss": loss, "support_loss": result.loss_after,
                "path_length": length}
        return grads, logs, pred


def _flatten(tensors):
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)
