"""The shared compiled inner loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import mlp, task_batch
from tfmeta import inner_loop, inner_optimizers


def run(model, batch, steps, mask=None, **kwargs):
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    return params, inner_loop.adapt(
        model, keras.losses.get("mse"),
        inner_optimizers.from_keras(keras.optimizers.SGD(0.1)), params, [],
        batch["support_x"][0], batch["support_y"][0], steps, mask=mask,
        **kwargs)


def test_matches_keras_fit_step_by_step():
    """K full-batch steps equal K Keras train_on_batch calls with SGD."""
    batch = task_batch(num_tasks=1, seed=9)
    model = mlp([2, 5, 1])
    _, result = run(model, batch, 7)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    for _ in range(7):
        model.train_on_batch(batch["support_x"][0], batch["support_y"][0])
    for a, b in zip(result.params, model.trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_masked_parameters_stay_fixed():
    batch = task_batch(num_tasks=1)
    model = mlp([2, 5, 1])
    mask = [False, False, True, True]  # first layer fixed
    params, result = run(model, batch, 5, mask=mask)
    for p0, p, m in zip(params, result.params, mask):
        assert (np.abs(p.numpy() - p0.numpy()).max() > 0) == m
    with pytest.raises(ValueError, match="mask has 1 entries for 4"):
        run(model, batch, 2, mask=[True])


def test_minibatches_are_seeded():
    batch = task_batch(num_tasks=1, support=20)
    model = mlp([2, 5, 1])
    seed = tf.constant([1, 2], tf.int64)
    a = run(model, batch, 4, batch_size=5, seed=seed)[1].params
    b = run(model, batch, 4, batch_size=5, seed=seed)[1].params
    c = run(model, batch, 4, batch_size=5,
            seed=tf.constant([3, 4], tf.int64))[1].params
    np.testing.assert_array_equal(a[0].numpy(), b[0].numpy())
    assert np.abs(a[0].numpy() - c[0].numpy()).max() > 0


@pytest.mark.parametrize("limit", [inner_loop.PRECOMPUTE_LIMIT, 0],
                         ids=["precomputed", "per-step"])
def test_hoisted_minibatches_are_the_minibatch_draws(monkeypatch, limit):
    """``minibatches`` (indices of all steps computed before the loop, or
    per-step keys) draws exactly ``minibatch(..., step)`` for every step,
    also under ``vectorized_map`` with a seed per task."""
    monkeypatch.setattr(inner_loop, "PRECOMPUTE_LIMIT", limit)
    x = tf.range(23)[:, None] * 10
    seed = tf.constant([5, 9], tf.int64)
    batch = inner_loop.minibatches(x, x + 1, 4, seed, 6)
    for step in range(7):
        want = inner_loop.minibatch(x, x + 1, 4, seed, step)
        got = tf.function(batch)(tf.constant(step))
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    seeds = tf.constant([[1, 2], [3, 4]], tf.int64)
    batched = tf.function(lambda: tf.vectorized_map(
        lambda s: inner_loop.minibatches(x, x, 4, s, 6)(3)[0], seeds,
        fallback_to_while_loop=False))().numpy()
    for row, s in zip(batched, seeds):
        np.testing.assert_array_equal(
            row, inner_loop.minibatch(x, x, 4, s, 3)[0].numpy())


def test_minibatch_draws_are_uniform_and_vectorizable():
    x = tf.range(20)[:, None]
    counts = np.zeros(20)
    for step in range(500):
        xb, _ = inner_loop.minibatch(x, x, 5, tf.constant([7, 8], tf.int64), step)
        assert len(set(xb.numpy().ravel())) == 5  # without replacement
        counts[xb.numpy().ravel()] += 1
    assert counts.min() > 0.7 * 125 and counts.max() < 1.3 * 125
    seeds = tf.constant([[1, 2], [3, 4], [1, 2]], tf.int64)
    draw = lambda s: inner_loop.minibatch(x, x, 5, s, 3)[0]  # noqa: E731
    batched = tf.function(lambda: tf.vectorized_map(
        draw, seeds, fallback_to_while_loop=False))().numpy()
    np.testing.assert_array_equal(batched[0], batched[2])
    np.testing.assert_array_equal(batched[1], draw(seeds[1]).numpy())
    assert not np.array_equal(batched[0], batched[1])


def test_stepper_from_python_follows_the_while_loop_path():
    """The step-by-step form, driven from Python one update at a time (as an
    environment would), gives the while loop's parameters, losses and hook
    state (Leap's eq. 8 accumulator), with Adam state and minibatches."""
    batch = task_batch(num_tasks=1, support=12, seed=4)
    model = mlp([2, 5, 1])
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    objective = inner_loop.supervised(model, keras.losses.get("mse"))
    adam = inner_optimizers.from_keras(keras.optimizers.Adam(0.05))
    data = (batch["support_x"][0], batch["support_y"][0])
    seed = tf.constant([3, 7], tf.int64)
    hook = tfmeta.Leap(model).flat_hook()
    steps = 5
    want = inner_loop.optimize(objective, adam, params, [], data, steps,
                               batch_size=4, seed=seed, hook=hook,
                               hook_state=tfmeta.leap.flat_state(params))
    stepper = inner_loop.Stepper(objective, adam, hook=hook)
    draw = lambda i: inner_loop.sample(data, 4, seed, i)  # noqa: E731
    state = stepper.start(params, [], draw(0), tfmeta.leap.flat_state(params))
    for i in range(steps - 1):
        theta_next = stepper.next_params(state)   # what the env would run
        state = stepper.step(state, draw(i + 1))
        for a, b in zip(theta_next, state.params):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    got = stepper.finish(state, draw(steps))
    for a, b in zip(tf.nest.flatten((want.params, want.hook_state,
                                     want.loss_before, want.loss_after)),
                    tf.nest.flatten((got.params, got.hook_state,
                                     got.loss_before, got.loss_after))):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
    assert float(want.loss_after) < float(want.loss_before)


def test_objective_over_a_nested_batch_gathers_the_same_rows():
    """An objective on a nested batch (here weighted examples: a loss that is
    not ``loss_fn(y, pred)``) adapts through the unchanged loop; every
    minibatch gathers the same rows of every leaf."""
    model = mlp([2, 4, 1])
    rng = np.random.default_rng(0)
    data = {"x": rng.normal(size=(10, 2)).astype("float32"),
            "target": {"y": rng.normal(size=(10, 1)).astype("float32"),
                       "w": np.arange(10, dtype="float32")[:, None]}}

    def weighted(params, nontrainable, batch):
        pred, nontrainable = model.stateless_call(params, nontrainable,
                                                  batch["x"], training=True)
        t = batch["target"]
        return tf.reduce_mean(t["w"] * tf.square(pred - t["y"])), pred, \
            nontrainable

    seed = tf.constant([1, 2], tf.int64)
    for step in range(3):
        b = inner_loop.sample(data, 4, seed, step)
        rows = b["target"]["w"].numpy()[:, 0].astype(int)
        np.testing.assert_array_equal(b["x"].numpy(), data["x"][rows])
        np.testing.assert_array_equal(b["target"]["y"].numpy(),
                                      data["target"]["y"][rows])
    params = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    sgd = inner_optimizers.from_keras(keras.optimizers.SGD(0.01))
    result = inner_loop.optimize(weighted, sgd, params, [], data, 4,
                                 batch_size=None)
    theta = params
    for _ in range(4):  # by hand: full-batch SGD on the weighted loss
        with tf.GradientTape() as tape:
            tape.watch(theta)
            loss, _, _ = weighted(theta, [], data)
        theta = [p - 0.01 * g for p, g in zip(theta, tape.gradient(loss, theta))]
    for a, b in zip(result.params, theta):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
