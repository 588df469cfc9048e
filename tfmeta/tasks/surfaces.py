"""Synthetic 2-D loss surfaces of WarpGrad's appendix D.

A task is to minimize, from a random start ``x ~ U(-3, 3)^2``,

    f(x1, x2) = b1 (a1 - x1)^2 exp(-x1^2 - (x2 + a2)^2)
              - b2 (x1 / s - x1^3 - x2^5) exp(-x1^2 - x2^2)
              - b3 exp(-(x1 + a3)^2 - x2^2)

with ``s ~ Cat(1..10)``, ``a_i ~ Cat(-1, 0, 1)``, ``b_i ~ Cat(-5..5)``: a
randomized MATLAB ``peaks``. (The paper's text prints the powers and the last
exponent garbled; we use ``peaks``' form, which its figure shows.)

The task learner is a point: its task parameters ``theta`` (2-D, zero
initialized) are added to the start ``x0``, which the task feeds as input,
so every task starts at its own ``x0``. ``learner(warp=True)`` inserts the
appendix-D warp (a residual 2-layer MLP, 30 tanh units, identity at
initialization) between the point and the surface: task loss
``f(Omega(x0 + theta; phi))``. Each example of a task batch is
``[x0, a1, a2, a3, b1, b2, b3, s]`` (9 numbers); targets are unused zeros.
"""

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tfmeta.layers import ResidualMLPWarp

START_RANGE = (-3.0, 3.0)
"""Each coordinate of a task's start ``x0 ~ U(-3, 3)``."""


def surface(x1, x2, c):
    """f at ``(x1, x2)`` for coefficients ``c = [a1, a2, a3, b1, b2, b3, s]``.

    Args:
      x1: first coordinates.
      x2: second coordinates (same shape).
      c: coefficients along the last axis, ``[..., 7]``.
    """
    a1, a2, a3, b1, b2, b3, s = (c[..., i] for i in range(7))
    return (b1 * (a1 - x1) ** 2 * ops.exp(-x1 ** 2 - (x2 + a2) ** 2)
            - b2 * (x1 / s - x1 ** 3 - x2 ** 5) * ops.exp(-x1 ** 2 - x2 ** 2)
            - b3 * ops.exp(-(x1 + a3) ** 2 - x2 ** 2))


def sample_coefficients(num, rng):
    """``[num, 7]`` coefficients drawn as in appendix D.

    Args:
      num: number of surfaces.
      rng: a ``numpy.random.Generator``.
    """
    a = rng.integers(-1, 2, size=(num, 3))
    b = rng.integers(-5, 6, size=(num, 3))
    s = rng.integers(1, 11, size=(num, 1))
    return np.concatenate([a, b, s], axis=1).astype("float32")


def tasks(num_surfaces, starts_per_surface=10, seed=0, dtype="float32"):
    """A task batch: every surface with ``starts_per_surface`` random starts
    (one task each), ``B = num_surfaces * starts_per_surface``.

    Args:
      num_surfaces: surfaces drawn.
      starts_per_surface: random starts per surface (default 10).
      seed: int seed of a NumPy generator (default 0).
      dtype: the arrays' dtype (default ``"float32"``).
    """
    rng = np.random.default_rng(seed)
    coeffs = np.repeat(sample_coefficients(num_surfaces, rng),
                       starts_per_surface, axis=0)
    starts = rng.uniform(*START_RANGE, size=(len(coeffs), 2))
    x = np.concatenate([starts, coeffs], axis=1)[:, None, :].astype(dtype)
    y = np.zeros((len(coeffs), 1, 1), dtype)
    return {"support_x": x, "support_y": y, "query_x": x.copy(),
            "query_y": y.copy()}


def dataset(starts_per_surface=10, seed=0):
    """Endless task batches: one new surface and its starts per element
    (appendix D's meta-batch).

    Args:
      starts_per_surface: tasks per element (default 10).
      seed: int seed (default 0); element ``i`` uses
        ``seed * 1_000_003 + i``.
    """
    def gen():
        i = 0
        while True:
            yield tasks(1, starts_per_surface, seed=seed * 1_000_003 + i)
            i += 1
    spec = tf.TensorSpec((starts_per_surface, 1, 9), tf.float32)
    yspec = tf.TensorSpec((starts_per_surface, 1, 1), tf.float32)
    return tf.data.Dataset.from_generator(
        gen, output_signature={"support_x": spec, "support_y": yspec,
                               "query_x": spec, "query_y": yspec})


def value_loss(y_true, y_pred):
    """The task loss: the learner already outputs f (targets unused).

    Args:
      y_true: ignored.
      y_pred: the learner's output, f at the point, ``[..., 1]``.
    """
    del y_true
    return y_pred[..., 0]


@keras.saving.register_keras_serializable(package="tfmeta")
class Point(keras.layers.Layer):
    """Task parameters of a point learner: ``x0 + theta`` (theta starts 0)."""

    def build(self, input_shape):
        self.theta = self.add_weight(shape=(input_shape[-1],),
                                     initializer="zeros", name="theta")

    def call(self, x0):
        return x0 + self.theta


@keras.saving.register_keras_serializable(package="tfmeta")
class Surface(keras.layers.Layer):
    """``f(point)`` for the coefficients carried in the input."""

    def call(self, point, coeffs):
        return surface(point[..., 0], point[..., 1], coeffs)[..., None]


def learner(warp=True, hidden_units=30, seed=0):
    """The point learner; with ``warp`` the appendix-D warp ``Omega``
    (identity at initialization) sits between the point and the surface.
    ``seed`` seeds the warp's initializer (the process's random generators
    are left alone).

    Args:
      warp: insert the warp ``Omega`` (default ``True``).
      hidden_units: the warp MLP's width (default 30).
      seed: seed of the warp's initializer (default 0).
    """
    inputs = keras.Input((9,))
    point = Point(name="point")(inputs[:, :2])
    if warp:
        point = ResidualMLPWarp(
            hidden_units, num_layers=2, activation="tanh", name="warp",
            hidden_initializer=keras.initializers.GlorotUniform(seed=seed))(point)
    out = Surface(name="surface")(point, inputs[:, 2:])
    return keras.Model(inputs, out, name="warped_point" if warp else "point")

