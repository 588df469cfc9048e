import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")  # as tfmeta does

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfmeta  # noqa: E402
from tfmeta.tasks import omniglot as _omniglot  # noqa: E402


def _have_omniglot():
    try:
        _omniglot.find_archives()
    except FileNotFoundError:
        return False
    return True


# Tests that read the Omniglot archives of ../shared/data (or TFMETA_DATA)
# are skipped, with the reason, on a checkout without them; CI has them.
requires_omniglot = pytest.mark.skipif(
    not _have_omniglot(),
    reason="Omniglot archives not found (../shared/data or TFMETA_DATA)")


def central_difference(var, loss, eps=1e-6):
    """Central-difference gradient of ``loss()`` (a number) with respect to
    the variable ``var``, entry by entry; ``var`` is restored afterwards."""
    value = var.numpy()
    numeric = np.zeros_like(value)
    for index in np.ndindex(value.shape):
        losses = []
        for sign in (1, -1):
            shifted = value.copy()
            shifted[index] += sign * eps
            var.assign(shifted)
            losses.append(loss())
        numeric[index] = (losses[0] - losses[1]) / (2 * eps)
    var.assign(value)
    return numeric


@pytest.fixture
def float64():
    """Build models in float64 so finite differences are meaningful."""
    # Keras caches a global dtype policy on first use: set both.
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx("float32")
    keras.config.set_dtype_policy("float32")


def mlp(sizes, activation="tanh", seed=0, batch_norm=False):
    """A small Sequential MLP with deterministic initial weights."""
    keras.utils.set_random_seed(seed)
    layers = [keras.Input((sizes[0],))]
    for width in sizes[1:-1]:
        if batch_norm:  # dense -> batch norm -> activation
            layers += [keras.layers.Dense(width),
                       tfmeta.layers.BatchNormalization(),
                       keras.layers.Activation(activation)]
        else:
            layers.append(keras.layers.Dense(width, activation=activation))
    layers.append(keras.layers.Dense(sizes[-1]))
    return keras.Sequential(layers)


def task_batch(num_tasks=2, support=6, query=5, dim=2, seed=0,
               dtype="float32"):
    """Random regression tasks as a task-batch dict of numpy arrays."""
    rng = np.random.default_rng(seed)
    shape = lambda n, d: (num_tasks, n, d)  # noqa: E731
    batch = {
        "support_x": rng.normal(size=shape(support, dim)),
        "support_y": rng.normal(size=shape(support, 1)),
        "query_x": rng.normal(size=shape(query, dim)),
        "query_y": rng.normal(size=shape(query, 1)),
    }
    return {k: v.astype(dtype) for k, v in batch.items()}


def as_dataset(batch):
    return tf.data.Dataset.from_tensors(batch)


def weights(model):
    return [v.numpy() for v in model.learner.trainable_variables]


def one_meta_step(meta, batch):
    """Runs one meta-step through ``fit`` and returns (before, after)."""
    before = weights(meta)
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    return before, weights(meta)
