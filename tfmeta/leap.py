"""Leap (Flennerhag et al., 2019): the pull-forward meta-gradient."""

import functools

import keras
import tensorflow as tf

from tfmeta import registry
from tfmeta.meta_learner import MetaLearner

METRICS = {"length": 1, "energy": 2}


def check_metric(metric):
    """``metric`` if it names a Leap metric, else a ``ValueError``."""
    if metric not in METRICS:
        raise ValueError(
            f"Unknown Leap metric {metric!r}; use one of {sorted(METRICS)}.")
    return metric


def pull_forward_increment(state, theta, theta_next, loss, loss_next, grads,
                           metric="length", loss_in_manifold=True,
                           stabilizer=True, d_theta=None):
    """Adds segment ``i``'s term of eq. 8 to ``state = (meta_grad,
    path_length)``; a pure function of its arguments.

        meta_grad -= (df_i grad f(theta_i) + dtheta_i) / ||dgamma_i||^(2-p)

    with ``dtheta_i = theta_{i+1} - theta_i``, ``df_i = f(theta_{i+1}) -
    f(theta_i)`` (``-|df_i|`` with ``stabilizer``, 0 without
    ``loss_in_manifold``) and ``||dgamma_i||^2 = ||dtheta_i||^2 + df_i^2``;
    ``path_length`` accumulates ``d_p`` (eq. 3). ``theta``, ``theta_next``,
    ``grads`` and ``meta_grad`` are lists of tensors of the same shapes: any
    split of the parameters gives the same result (``flat_increment``).
    Given ``d_theta`` (the step as the optimizer took it, ``theta_next =
    theta + d_theta``: ``InnerOptimizer.update_with_increments``), it is
    used and ``theta``/``theta_next`` are not read. Used by ``Leap``,
    Warp-Leap and, per rollout batch, RL Leap.
    """
    acc, length = state
    p = METRICS[metric]
    if d_theta is None:
        d_theta = [b - a for a, b in zip(theta, theta_next)]
    sq_norm = tf.add_n([tf.reduce_sum(tf.square(d)) for d in d_theta])
    d_f = tf.zeros([], sq_norm.dtype)
    if loss_in_manifold:
        d_f = tf.cast(loss_next - loss, sq_norm.dtype)
        sq_norm += tf.square(d_f)
        if stabilizer:
            d_f = -tf.abs(d_f)
    if p == 1:
        norm = tf.sqrt(sq_norm)
        scale = tf.math.divide_no_nan(1.0, norm)
        segment = norm
    else:
        scale, segment = tf.ones([], sq_norm.dtype), sq_norm
    acc = [a - scale * (d_f * g + d) for a, g, d in zip(acc, grads, d_theta)]
    return acc, length + segment


def flatten(tensors):
    """The tensors as one flat vector."""
    return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten(flat, like):
    """Inverse of ``flatten``: tensors shaped as ``like``."""
    return [tf.reshape(g, tf.shape(p)) for g, p in zip(
        tf.split(flat, [tf.size(p) for p in like]), like)]


def flat_state(params):
    """Initial state of ``flat_increment``: a zero flat accumulator over
    ``params`` and path length 0."""
    flat = flatten(params)
    return [tf.zeros_like(flat)], tf.zeros([], flat.dtype)


def flat_increment(state, theta, theta_next, loss, loss_next, grads,
                   d_theta=None, **options):
    """``pull_forward_increment`` on the parameters as one flat vector: one
    accumulator instead of one per tensor saves the inner loop most of the
    ops the hook would add to every step. (Carrying the flattened
    theta_{i+1} to the next step instead of flattening it again saves 7 ops
    but adds a loop variable, whose control-flow ops cost as much: measured
    no faster.) Given ``d_theta`` (the update's increments), theta_i and
    theta_{i+1} are not read: under XLA the inner loop then no longer
    copies every parameter at every step to keep theta_i alive (the sine
    MLP's XLA loop step: 49 -> 42 kernels; docs/performance.md).
    ``unflatten(state[0][0], params)`` gives the per-tensor meta-gradient.
    """
    if d_theta is not None:
        return pull_forward_increment(
            state, None, None, loss, loss_next, [flatten(grads)],
            d_theta=[flatten(d_theta)], **options)
    return pull_forward_increment(
        state, [flatten(theta)], [flatten(theta_next)], loss, loss_next,
        [flatten(grads)], **options)


@registry.register("leap", "Leap: pull-forward gradient on the task's "
                           "learning path")
class Leap(MetaLearner):
    """Leap: minimizes the expected length (or energy) of the task's gradient
    path on the loss surface (eq. 6) by the pull-forward meta-gradient of
    eq. 8 (``pull_forward_increment``), with the Jacobians approximated by
    the identity, accumulated on the fly while each task trains, averaged
    over the meta-batch. Eq. 8's constant factor ``p`` is dropped, as in the
    authors' code, so the paper's meta learning rates carry over; with
    ``metric="energy"``, no loss and no stabilizer the meta-gradient is then
    exactly Reptile's, ``theta_0 - theta_K``.

    Args:
      learner: a built Keras model, the task learner.
      metric: ``"length"`` (p=1, the paper's default; the default here) or
        ``"energy"`` (p=2).
      loss_in_manifold: include the loss in the task manifold (``df_i``
        terms; default ``True``); without it the path lives in parameter
        space only.
      stabilizer: replace ``df_i`` by ``-|df_i|`` (section 2.3; default
        ``True``), so the meta-gradient never follows an ascent direction.
      **kwargs: the ``tfmeta.MetaLearner`` arguments (``inner_optimizer``,
        ``inner_steps``, ``eval_steps``, ``inner_batch_size``,
        ``parallel_tasks``, ``vectorize_tasks``, ``seed``, ``name``).
    """

    auto_vectorize = True  # (tfmeta.fast_path.vectorize_tasks)

    def __init__(self, learner, metric="length", loss_in_manifold=True,
                 stabilizer=True, **kwargs):
        check_metric(metric)
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

    def leap_options(self):
        """This Leap's options of ``pull_forward_increment``."""
        return {"metric": self.metric,
                "loss_in_manifold": self.loss_in_manifold,
                "stabilizer": self.stabilizer}

    def flat_hook(self):
        """The inner loop hook: ``flat_increment`` with this Leap's options,
        on the update's increments (``takes_increments``: the inner loop
        passes ``d_theta``)."""
        increment = functools.partial(flat_increment, **self.leap_options())

        def hook(state, i, *args, **kwargs):
            return increment(state, *args, **kwargs)
        hook.takes_increments = True
        return hook

    def task_meta_gradient(self, params, nontrainable, task, seed):
        result = self.adapt_task(params, nontrainable, task, seed,
                                 hook=self.flat_hook(),
                                 hook_state=flat_state(params))
        (flat,), length = result.hook_state
        loss, pred = self.query_loss(result.params, result.nontrainable, task)
        logs = {"loss": loss, "support_loss": result.loss_after,
                "path_length": length}
        return unflatten(flat, params), logs, pred
