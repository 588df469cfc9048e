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


def _have_mujoco():
    try:
        import gymnasium  # noqa: F401
        import mujoco  # noqa: F401
    except ImportError:
        return False
    return True


# Tests that simulate MuJoCo (pendulums, Ant) are skipped, with the reason,
# where the mujoco extra is not installed.
HAVE_MUJOCO = _have_mujoco()
requires_mujoco = pytest.mark.skipif(
    not HAVE_MUJOCO, reason="mujoco extra not installed (pip install "
                            "'tfmeta[mujoco]')")


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



def assert_warp_gradient_matches_finite_differences(meta, batch, buffer,
                                                    grads):
    """``grads`` (from ``meta.warp_objective(batch, buffer)``) against
    central differences of that objective in each warp variable."""
    for var, grad in zip(meta.warp_variables, grads):
        numeric = central_difference(
            var, lambda: meta.warp_objective(batch, buffer)[0])
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def eq12_by_hand(learner, batch, buffer, lr):
    """WarpGrad's eq. 12 recomputed with the Keras model's variables, MSE
    loss, full-batch steps: for every buffer entry, theta' = sg[theta_k -
    lr grad L_task(theta_k)], then grad_phi L_meta(theta'), averaged; the
    task variables are restored afterwards."""
    task_vars, warp_vars = tfmeta.warpgrad.partition(learner)
    saved = [v.numpy() for v in task_vars]
    mse = keras.losses.MeanSquaredError()
    expected = [np.zeros(v.shape) for v in warp_vars]
    n = len(buffer["step"])
    for e in range(n):
        t = buffer["task"][e]
        for var, theta in zip(task_vars, buffer["theta"]):
            var.assign(theta[e])
        with tf.GradientTape() as tape:
            task_loss = mse(batch["support_y"][t],
                            learner(batch["support_x"][t], training=True))
        for var, grad in zip(task_vars, tape.gradient(task_loss, task_vars)):
            var.assign(tf.stop_gradient(var - lr * grad))
        with tf.GradientTape() as tape:
            meta_loss = mse(batch["query_y"][t],
                            learner(batch["query_x"][t], training=True))
        for acc, grad in zip(expected, tape.gradient(meta_loss, warp_vars)):
            acc += grad.numpy() / n
    for var, value in zip(task_vars, saved):
        var.assign(value)
    return expected


def assert_export_adapts_like_meta(meta, path, sx, sy, qx):
    """The SavedModel at ``path`` predicts as ``meta.adapt(sx, sy)
    .predict(qx)`` and its ``adapt`` keeps the warp variables fixed;
    returns the exported ``adapt``'s weights."""
    loaded = tf.saved_model.load(path)
    expected = meta.adapt(sx, sy).predict(qx, verbose=0)
    got = loaded.adapt_and_predict(sx, sy, qx)["predictions"].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    adapted = loaded.adapt(sx, sy)
    learner = meta.learner
    warp_ids = {id(v) for v in tfmeta.warpgrad.partition(learner)[1]}
    names = tfmeta.export.adapted_weight_names(learner)
    for name, var in zip(names, learner.trainable_variables):
        if id(var) in warp_ids:
            np.testing.assert_array_equal(adapted[name].numpy(), var.numpy())
    return got, adapted

def fit_lowers_the_query_loss(meta, train, steps=30):
    """``fit`` for ``steps`` meta-steps on the task batch ``train`` lowers
    its mean query loss after adaptation below 0.9 of the start's."""
    start = meta.evaluate_tasks(train)["loss_after"].mean()
    meta.fit(as_dataset(train).repeat(), epochs=1, steps_per_epoch=steps,
             verbose=0)
    after = meta.evaluate_tasks(train)["loss_after"].mean()
    assert after < 0.9 * start, (start, after)


def assert_exported_adapt_matches(meta, path, sx, sy):
    """The SavedModel at ``path`` adapts to the weights ``meta.adapt``
    gives on the same support split; returns the exported ``adapt``'s
    outputs (by ``tfmeta.export.adapted_weight_names``)."""
    loaded = tf.saved_model.load(path)   # held: its variables must live
    out = loaded.adapt(sx, sy)
    names = tfmeta.export.adapted_weight_names(meta.learner)
    expected = meta.adapt(sx, sy).trainable_variables
    for name, value in zip(names, expected):
        np.testing.assert_allclose(out[name].numpy(), value.numpy(),
                                   rtol=1e-5, atol=1e-6)
    return out


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


def query_loss_after_adaptation(meta, batch):
    """The meta-objective at the current weights, as a compiled function
    (mean over tasks of the query loss after ``adapt_task``; full-batch
    steps, so the seed does not matter)."""
    tasks = {k: tf.constant(v) for k, v in batch.items()}

    @tf.function
    def objective():
        params, nontrainable = meta.current_state()
        losses = []
        for i in range(batch["support_x"].shape[0]):
            task = {k: v[i] for k, v in tasks.items()}
            result = meta.adapt_task(params, nontrainable, task,
                                     tf.constant([0, 0], tf.int64))
            losses.append(meta.query_loss(result.params, result.nontrainable,
                                          task)[0])
        return tf.add_n(losses) / len(losses)
    return lambda: float(objective())


def weights(model):
    return [v.numpy() for v in model.learner.trainable_variables]


def one_meta_step(meta, batch):
    """Runs one meta-step through ``fit`` and returns (before, after)."""
    before = weights(meta)
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    return before, weights(meta)


@pytest.fixture(autouse=True)
def _no_automatic_xla(request, monkeypatch):
    """The suite compiles without XLA unless a test asks for it: the fast
    defaults (tfmeta.fast_path) would compile most of its small dense
    meta-learners with XLA, whose compile time costs far more than the few
    meta-steps a test runs (4 test files took 164 s of CPU instead of 94 s).
    tests/test_fast_path.py tests the automatic choice itself."""
    if request.module.__name__ != "test_fast_path":
        monkeypatch.setattr(tfmeta.fast_path, "jit_compile",
                            lambda meta: False)
