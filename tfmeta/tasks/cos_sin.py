"""Cosine -> sine transfer tasks (gradient-based transfer paper, section 5.2).

A task has amplitude ``A ~ U[0.1, 5]`` and phase ``b ~ U[-pi, pi]``; its
support is ``y = A cos(x + b)`` plus white noise ``N(0, sigma^2)``, its query
the noiseless ``y = A sin(x + b)`` of the same ``A`` and ``b``, inputs
``x ~ U[-5, 5]`` (the paper gives no input range; the sine family's).
Sampling is stateless: task batch ``i`` of a seed is the same on every run,
and the noise of a batch does not change its tasks (so one seed gives the
same tasks at every ``sigma``).
"""

import math

import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.tasks.pipeline import task_stream

AMPLITUDE_RANGE = (0.1, 5.0)
"""Amplitude ``A ~ U[0.1, 5]``."""
PHASE_RANGE = (-math.pi, math.pi)
"""Phase ``b ~ U[-pi, pi]`` (radians)."""
X_RANGE = (-5.0, 5.0)
"""Inputs ``x ~ U[-5, 5]``."""
TASK_DIM = 2          # (A, b): the code size k of the paper
"""The task's true dimension, ``(A, b)``: the code size ``k`` of the paper."""
SUPPORT_DIMS = (1, 1)  # (ds, es)
"""``(ds, es)``: per-point sizes of ``support_x`` and ``support_y``."""


def _uniform(shape, seed, bounds):
    return tf.random.stateless_uniform(shape, seed, bounds[0], bounds[1])


def _check(meta_batch_size, support_size, query_size, sigma):
    positive_int("meta_batch_size", meta_batch_size)
    positive_int("support_size", support_size)
    positive_int("query_size", query_size)
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) \
            or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a non-negative number, got {sigma!r}.")


def _task_batch(index, meta_batch_size, support_size, query_size, sigma, seed):
    key = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, 2], tf.int64), index)
    keys = tf.random.experimental.stateless_split(key, 5)
    amplitude = _uniform([meta_batch_size, 1, 1], keys[0], AMPLITUDE_RANGE)
    phase = _uniform([meta_batch_size, 1, 1], keys[1], PHASE_RANGE)
    support_x = _uniform([meta_batch_size, support_size, 1], keys[2], X_RANGE)
    query_x = _uniform([meta_batch_size, query_size, 1], keys[3], X_RANGE)
    noise = tf.random.stateless_normal([meta_batch_size, support_size, 1],
                                       keys[4])
    return {
        "support_x": support_x,
        "support_y": amplitude * tf.cos(support_x + phase) + sigma * noise,
        "query_x": query_x,
        "query_y": amplitude * tf.sin(query_x + phase),
        "amplitude": amplitude[:, 0, 0],
        "phase": phase[:, 0, 0],
    }


def dataset(meta_batch_size=10, support_size=10, query_size=10, sigma=0.0,
            seed=0, start=0):
    """An endless ``tf.data.Dataset`` of cos -> sin task batches.

    Elements: ``support_x/support_y [B, support_size, 1]``,
    ``query_x/query_y [B, query_size, 1]``, ``amplitude`` and ``phase``
    ``[B]``; element ``i`` depends on ``(seed, i)`` only, from ``start``.

    Args:
      meta_batch_size: tasks per element, ``B`` (default 10).
      support_size: support points per task (default 10).
      query_size: query points per task (default 10).
      sigma: standard deviation of the support's white noise, >= 0 (default
        0.0: noiseless).
      seed: int seed of the task stream (default 0).
      start: index of the first element (default 0).
    """
    _check(meta_batch_size, support_size, query_size, sigma)
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")
    return task_stream(
        lambda i: _task_batch(i, meta_batch_size, support_size, query_size,
                              float(sigma), seed),
        start)


def tasks(num_tasks, support_size=10, query_size=100, sigma=0.0, seed=0):
    """One fixed batch of ``num_tasks`` tasks as NumPy arrays (held-out).

    Args:
      num_tasks: tasks in the batch.
      support_size: support points per task (default 10).
      query_size: query points per task (default 100).
      sigma: the support noise's standard deviation (default 0.0).
      seed: int seed (default 0).
    """
    _check(num_tasks, support_size, query_size, sigma)
    batch = _task_batch(tf.constant(0, tf.int64), num_tasks, support_size,
                        query_size, float(sigma), seed)
    return {k: v.numpy() for k, v in batch.items()}


def query_mlp(hidden=(40, 40), activation="relu", seed=None):
    """A query learner ``g_psi`` for the sine query: 1-40-40-1 MLP.

    Args:
      hidden: hidden widths (default ``(40, 40)``).
      activation: their activation (default ``"relu"``).
      seed: initializer seed (default ``None``), as ``sine.mlp``'s.
    """
    from tfmeta.tasks import sine

    return sine.mlp(hidden, activation, seed, name="sine_query_mlp")
