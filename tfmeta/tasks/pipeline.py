"""The ``tf.data`` stream and options of the task datasets tfmeta builds
itself."""

import tensorflow as tf


def without_autotuning(dataset):
    """``dataset`` with ``tf.data``'s autotuning off
    (``tf.data.Options().autotune.enabled = False``), for the in-memory task
    streams the task families build (``sine.dataset``, ``cos_sin.dataset``,
    ``omniglot.dataset``...). ``num_parallel_calls=tf.data.AUTOTUNE`` then
    runs at its default parallelism (the cores, at most 16) and
    ``prefetch(tf.data.AUTOTUNE)`` keeps its own buffer tuning; what goes is
    the autotuning model's background thread. On small nets that thread
    shares the cores with the meta-step, and on the 2-core machines we
    measured it made ``fit`` calls of the sine MLP end with a ~300 ms stall
    as the iterator was dropped (Reptile: 5-13 of 16 calls; none with it
    off; docs/performance.md). Datasets a user passes to ``fit`` are left as
    they are: call this on them to get the same.

    Args:
      dataset: a ``tf.data.Dataset``.

    Returns:
      ``dataset.with_options(...)``: the same elements.
    """
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)


def task_stream(element, start=0, count=None, autotune=False):
    """The task datasets' stream: ``element(i)`` for ``i = start, start + 1,
    ...`` (``count`` of them; default endless), built in parallel and in
    order, prefetched, with ``tf.data``'s autotuning off
    (``without_autotuning``) unless ``autotune``.

    Args:
      element: ``i -> element`` (an int64 scalar tensor in), traced once.
      start: index of the first element (default 0); the caller checks it.
      count: number of elements (default ``None``: endless).
      autotune: leave ``tf.data``'s autotuning on (default ``False``; the
        task families not measured without it pass ``True``).

    Returns:
      A ``tf.data.Dataset``.
    """
    ds = tf.data.Dataset.counter(start)
    if count is not None:
        ds = ds.take(count)
    ds = ds.map(element, num_parallel_calls=tf.data.AUTOTUNE,
                deterministic=True).prefetch(tf.data.AUTOTUNE)
    return ds if autotune else without_autotuning(ds)
