"""The shared compiled inner loop."""

import keras
import numpy as np
import pytest
import tensorflow as tf

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
