"""Sine-wave regression tasks (Finn et al., 2017; Reptile, section 3).

A task is ``y = a sin(x + b)`` with amplitude ``a ~ U[0.1, 5]``, phase
``b ~ U[0, pi]`` and inputs ``x ~ U[-5, 5]``. (The Reptile paper draws the
phase from ``U[0, 2 pi]``; pass ``phase_range=(0, 2 * math.pi)`` for that.)
Sampling is stateless: task ``i`` of a seed is the same on every run.
"""

import math

import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.tasks.pipeline import task_stream

AMPLITUDE_RANGE = (0.1, 5.0)
"""Amplitude ``a ~ U[0.1, 5]``."""
PHASE_RANGE = (0.0, math.pi)
"""Phase ``b ~ U[0, pi]`` (radians)."""
X_RANGE = (-5.0, 5.0)
"""Inputs ``x ~ U[-5, 5]``."""


def _uniform(shape, seed, bounds):
    return tf.random.stateless_uniform(shape, seed, bounds[0], bounds[1])


def _task_batch(index, meta_batch_size, support_size, query_size, seed,
                amplitude_range, phase_range, x_range):
    key = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, 0], tf.int64), index)
    keys = tf.random.experimental.stateless_split(key, 4)
    amplitude = _uniform([meta_batch_size, 1, 1], keys[0], amplitude_range)
    phase = _uniform([meta_batch_size, 1, 1], keys[1], phase_range)
    support_x = _uniform([meta_batch_size, support_size, 1], keys[2], x_range)
    query_x = _uniform([meta_batch_size, query_size, 1], keys[3], x_range)
    return {
        "support_x": support_x,
        "support_y": amplitude * tf.sin(support_x + phase),
        "query_x": query_x,
        "query_y": amplitude * tf.sin(query_x + phase),
        "amplitude": amplitude[:, 0, 0],
        "phase": phase[:, 0, 0],
    }


def _check(meta_batch_size, support_size, query_size):
    for name, value in (("meta_batch_size", meta_batch_size),
                        ("support_size", support_size),
                        ("query_size", query_size)):
        positive_int(name, value)


def dataset(meta_batch_size=5, support_size=10, query_size=10, seed=0,
            amplitude_range=AMPLITUDE_RANGE, phase_range=PHASE_RANGE,
            x_range=X_RANGE, start=0):
    """An endless ``tf.data.Dataset`` of sine task batches.

    Each element is a dict with ``support_x/support_y [B, support_size, 1]``,
    ``query_x/query_y [B, query_size, 1]`` and the tasks' ``amplitude`` and
    ``phase`` ``[B]``; element ``i`` depends on ``(seed, i)`` only, and the
    dataset begins at element ``start`` (to resume a run where it stopped).

    Args:
      meta_batch_size: tasks per element, ``B`` (default 5).
      support_size: support points per task (default 10).
      query_size: query points per task (default 10).
      seed: int seed of the task stream (default 0).
      amplitude_range: ``(low, high)`` of the uniform amplitude (default
        ``AMPLITUDE_RANGE``).
      phase_range: ``(low, high)`` of the uniform phase in radians (default
        ``PHASE_RANGE``).
      x_range: ``(low, high)`` of the uniform inputs (default ``X_RANGE``).
      start: index of the first element (default 0).
    """
    _check(meta_batch_size, support_size, query_size)
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")
    return task_stream(
        lambda i: _task_batch(i, meta_batch_size, support_size, query_size,
                              seed, amplitude_range, phase_range, x_range),
        start)


def tasks(num_tasks, support_size=10, query_size=100, seed=0, **ranges):
    """One fixed batch of ``num_tasks`` tasks (e.g. held-out test tasks).

    Args:
      num_tasks: tasks in the batch, ``B``.
      support_size: support points per task (default 10).
      query_size: query points per task (default 100).
      seed: int seed (default 0); use another seed than training's.
      **ranges: ``amplitude_range``, ``phase_range``, ``x_range`` as in
        ``dataset``.

    Returns:
      A dict of NumPy arrays with ``dataset``'s keys and shapes.
    """
    _check(num_tasks, support_size, query_size)
    batch = _task_batch(tf.constant(0, tf.int64), num_tasks, support_size,
                        query_size, seed,
                        ranges.get("amplitude_range", AMPLITUDE_RANGE),
                        ranges.get("phase_range", PHASE_RANGE),
                        ranges.get("x_range", X_RANGE))
    return {k: v.numpy() for k, v in batch.items()}


FREQUENCY_RANGE = (0.5, 2.0)
"""Frequency ``w ~ U[0.5, 2]`` of the sequence tasks."""


def _sequence_batch(index, meta_batch_size, support_size, query_size, length,
                    step, seed):
    key = tf.random.experimental.stateless_fold_in(
        tf.constant([seed, 1], tf.int64), index)
    keys = tf.random.experimental.stateless_split(key, 5)
    amplitude = _uniform([meta_batch_size, 1, 1], keys[0], AMPLITUDE_RANGE)
    phase = _uniform([meta_batch_size, 1, 1], keys[1], PHASE_RANGE)
    frequency = _uniform([meta_batch_size, 1, 1], keys[4], FREQUENCY_RANGE)
    offsets = step * tf.range(length + 1, dtype=tf.float32)

    def windows(n, k):
        start = _uniform([meta_batch_size, n, 1], k, X_RANGE)
        y = amplitude * tf.sin(frequency * (start + offsets) + phase)
        return y[..., :length, None], y[..., length:]

    support_x, support_y = windows(support_size, keys[2])
    query_x, query_y = windows(query_size, keys[3])
    return {"support_x": support_x, "support_y": support_y,
            "query_x": query_x, "query_y": query_y,
            "amplitude": amplitude[:, 0, 0], "phase": phase[:, 0, 0],
            "frequency": frequency[:, 0, 0]}


def sequence_dataset(meta_batch_size=8, support_size=16, query_size=16,
                     length=10, step=0.3, seed=0, start=0):
    """Sine *sequence* tasks for recurrent learners (the Warp-RNN example):
    a task is a sine ``a sin(w x + b)`` (``a``, ``b`` as above, frequency
    ``w ~ U[0.5, 2]``, so the next value depends on the task's ``w``); an
    example is a window of ``length`` values at ``x0, x0 + step, ...``
    (``x0 ~ U[-5, 5]``), inputs ``[length, 1]``, and the target is the next
    value.
    Elements as ``dataset``'s (``support_x [B, S, length, 1]``,
    ``support_y [B, S, 1]``); element ``i`` depends on ``(seed, i)`` only.

    Args:
      meta_batch_size: tasks per element, ``B`` (default 8).
      support_size: support windows per task, ``S`` (default 16).
      query_size: query windows per task (default 16).
      length: values per window (default 10).
      step: spacing of a window's inputs (default 0.3).
      seed: int seed of the task stream (default 0).
      start: index of the first element (default 0).
    """
    _check(meta_batch_size, support_size, query_size)
    positive_int("length", length)
    if not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")
    return task_stream(
        lambda i: _sequence_batch(i, meta_batch_size, support_size,
                                  query_size, length, step, seed),
        start)


def sequence_tasks(num_tasks, support_size=16, query_size=64, length=10,
                   step=0.3, seed=0):
    """One fixed batch of ``num_tasks`` sine sequence tasks.

    Args:
      num_tasks: tasks in the batch.
      support_size: support windows per task (default 16).
      query_size: query windows per task (default 64).
      length: values per window (default 10).
      step: spacing of a window's inputs (default 0.3).
      seed: int seed (default 0).
    """
    _check(num_tasks, support_size, query_size)
    batch = _sequence_batch(tf.constant(0, tf.int64), num_tasks, support_size,
                            query_size, length, step, seed)
    return {k: v.numpy() for k, v in batch.items()}


def curve(amplitude, phase, x):
    """The true function of a task at inputs ``x``, ``a sin(x + b)``.

    Args:
      amplitude: ``a`` (broadcast against ``x``).
      phase: ``b`` in radians.
      x: inputs.
    """
    return amplitude * tf.sin(x + phase)


def mlp(hidden=(64, 64), activation="tanh", seed=None, name="sine_mlp",
        dims=(1, 1)):
    """The 1-64-64-1 regression network of the Reptile/MAML sine experiments
    (a built ``keras.Sequential``).

    Args:
      hidden: widths of the hidden layers (default ``(64, 64)``).
      activation: their activation (default ``"tanh"``).
      seed: Glorot-uniform initializers seeded ``seed + i`` for layer ``i``
        (default ``None``: unseeded).
      name: the model's name (default ``"sine_mlp"``).
      dims: ``(inputs, outputs)`` (default ``(1, 1)``; other sizes for the
        query learners of the meta-transfer families).
    """
    import keras

    initializer = lambda i: keras.initializers.GlorotUniform(  # noqa: E731
        None if seed is None else seed + i)
    layers = [keras.Input((dims[0],))]
    layers += [keras.layers.Dense(h, activation=activation,
                                  kernel_initializer=initializer(i))
               for i, h in enumerate(hidden)]
    layers.append(keras.layers.Dense(
        dims[1], kernel_initializer=initializer(len(hidden))))
    return keras.Sequential(layers, name=name)
