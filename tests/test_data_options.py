"""tf.data options of the task datasets tfmeta builds
(``tfmeta.tasks.pipeline.without_autotuning``): autotuning off on tfmeta's
own task streams, a user's dataset left as it is."""

import numpy as np
import tensorflow as tf

from conftest import requires_omniglot
from tfmeta.tasks import cos_sin, omniglot, pipeline, sine


def autotune(dataset):
    return dataset.options().autotune.enabled


def elements(dataset, n=2):
    return list(dataset.take(n).as_numpy_iterator())


def test_task_families_turn_autotuning_off():
    for ds in (sine.dataset(), sine.sequence_dataset(), cos_sin.dataset()):
        assert autotune(ds) is False
        # the option holds through a user's further transformations
        assert autotune(ds.take(3).map(lambda e: e)) is False


@requires_omniglot
def test_omniglot_dataset_turns_autotuning_off():
    ds = omniglot.dataset(num_tasks=2, meta_batch_size=1, ways=2,
                          support_shots=1, query_shots=1)
    assert autotune(ds) is False


def test_same_elements_with_and_without_autotuning():
    ds = sine.dataset(meta_batch_size=3, seed=4)
    on = tf.data.Options()
    on.autotune.enabled = True
    tuned = ds.with_options(on)
    assert autotune(tuned) is True
    for a, b in zip(elements(ds), elements(tuned)):
        assert a.keys() == b.keys()
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def test_users_dataset_is_left_alone():
    user = tf.data.Dataset.from_tensors(
        {"support_x": np.ones((2, 3, 1), "float32")}).repeat(2)
    assert autotune(user) is None          # tfmeta's import set nothing
    fixed = pipeline.without_autotuning(user)
    assert autotune(fixed) is False and autotune(user) is None
    for a, b in zip(elements(user), elements(fixed)):
        np.testing.assert_array_equal(a["support_x"], b["support_x"])


def test_task_stream():
    """The one stream every task family builds: elements start, start + 1,
    ... in order, ``count`` of them, autotuning off unless asked."""
    ds = pipeline.task_stream(lambda i: i * 2, start=3, count=4)
    assert list(ds.as_numpy_iterator()) == [6, 8, 10, 12]
    assert autotune(ds) is False
    kept = pipeline.task_stream(lambda i: i, autotune=True)
    assert autotune(kept) is None
    assert elements(kept, 3) == [0, 1, 2]
