"""Endless ``tf.data`` datasets of task batches that NumPy code builds
(mazes searched in Python, MuJoCo simulations)."""

import tensorflow as tf

from tfmeta.tasks.pipeline import task_stream


def dataset(make_batch, keys, dtypes, shapes, start=0):
    """Element ``i`` (``i = start, start + 1, ...``) is the dict
    ``zip(keys, make_batch(i))``: ``make_batch`` runs in NumPy
    (``tf.numpy_function``) and returns arrays of ``dtypes`` and
    ``shapes``. Batches are built in parallel, in order."""
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise ValueError(f"start must be a non-negative integer, got {start!r}.")

    def load(i):
        out = tf.numpy_function(make_batch, [i], list(dtypes))
        for t, s in zip(out, shapes):
            t.set_shape(s)
        return dict(zip(keys, out))

    return task_stream(load, start, autotune=True)
