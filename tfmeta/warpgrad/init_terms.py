"""The initialization term of WarpGrad's joint objective ``J = L(phi) +
lambda C(theta_0)`` (eq. 13-17): none, Leap (Warp-Leap) or MAML (Warp-MAML).

A term follows a task's adaptation with phi fixed, on the task parameters
only: ``start`` before it, ``step`` once per inner step (inside the inner
loop's hook), ``gradient`` after it. Online (``record=False``) it returns
the task's gradient of C with respect to theta_0; recording (Algorithm 2's
replay buffer) it returns one increment per step, stacked ``[K, ...]``,
which sum to it.
"""

import tensorflow as tf

from tfmeta import leap


class NoInit:
    """``initialization=None``: theta_0 is fixed, no term."""

    name = None
    #: True when the term needs the task's adaptation differentiated (MAML).
    differentiates_adaptation = False

    def start(self, theta0, record, steps):
        return ()

    def step(self, state, i, theta, theta_next, loss, loss_next, grads,
             record):
        return state

    def gradient(self, state, theta0, record, steps, tape_grads=None):
        """``(gradient or stacked increments, path length)``."""
        zero = tf.zeros([], theta0[0].dtype)
        if record:
            return [tf.zeros([steps, 0], theta0[0].dtype)], zero
        return None, zero


class LeapInit(NoInit):
    """Warp-Leap (eq. 15-17): Leap's pull-forward gradient of the task
    parameters' path (``tfmeta.leap.flat_increment``, one flat
    accumulator).

    Args:
      metric: ``"length"`` (default) or ``"energy"``.
      loss_in_manifold: include the loss in the manifold (default ``True``).
      stabilizer: use ``-|df_i|`` (default ``True``).
    """

    name = "leap"

    def __init__(self, metric="length", loss_in_manifold=True,
                 stabilizer=True):
        self.options = {"metric": leap.check_metric(metric),
                        "loss_in_manifold": bool(loss_in_manifold),
                        "stabilizer": bool(stabilizer)}

    def start(self, theta0, record, steps):
        if not record:
            return leap.flat_state(theta0)
        flat = leap.flatten(theta0)
        return (tf.TensorArray(flat.dtype, size=steps,
                               element_shape=flat.shape),
                tf.zeros([], flat.dtype))

    def step(self, state, i, theta, theta_next, loss, loss_next, grads,
             record):
        if not record:
            return leap.flat_increment(state, theta, theta_next, loss,
                                       loss_next, grads, **self.options)
        increments, length = state
        (inc,), segment = leap.flat_increment(
            leap.flat_state(theta), theta, theta_next, loss, loss_next, grads,
            **self.options)
        return increments.write(i, inc), length + segment

    def gradient(self, state, theta0, record, steps, tape_grads=None):
        if not record:
            (flat,), length = state
            return leap.unflatten(flat, theta0), length
        increments, length = state
        stacked = increments.stack()
        parts = tf.split(stacked, [tf.size(p) for p in theta0], axis=1)
        return [tf.reshape(g, tf.concat([[steps], tf.shape(p)], 0))
                for g, p in zip(parts, theta0)], length


class MAMLInit(NoInit):
    """Warp-MAML (eq. 14): the MAML gradient through the warped adaptation,
    phi held fixed (our reading of "C_MAML = L_MAML under the constraint
    P = I"); recorded as ``1/K`` of it per step."""

    name = "maml"
    differentiates_adaptation = True

    def gradient(self, state, theta0, record, steps, tape_grads=None):
        zero = tf.zeros([], theta0[0].dtype)
        if not record:
            return list(tape_grads), zero
        return [tf.repeat(g[None] / steps, steps, axis=0)
                for g in tape_grads], zero


def make(initialization, **leap_options):
    """The term of an ``initialization`` name (``None``, ``"leap"``,
    ``"maml"``).

    Args:
      initialization: ``None``, ``"leap"`` or ``"maml"``.
      **leap_options: ``LeapInit``'s arguments, for ``"leap"``.
    """
    if initialization == "leap":
        return LeapInit(**leap_options)
    if initialization == "maml":
        return MAMLInit()
    return NoInit()
