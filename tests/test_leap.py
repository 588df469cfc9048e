"""Leap's meta-gradient against an independent NumPy computation of eq. 8."""

import functools
import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, mlp, one_meta_step, task_batch

INNER_LR, STEPS = 1.2, 6


def np_loss_and_grads(params, x, y):
    """MSE of a 1-hidden-layer tanh MLP and its gradient, by hand."""
    w1, b1, w2, b2 = params
    h = np.tanh(x @ w1 + b1)
    r = h @ w2 + b2 - y
    loss = np.mean(r ** 2)
    d_pred = 2 * r / r.size
    d_z = (d_pred @ w2.T) * (1 - h ** 2)
    return loss, [x.T @ d_z, d_z.sum(0), h.T @ d_pred, d_pred.sum(0)]


def np_leap_gradient(params, x, y, p, use_loss, stabilizer):
    """Eq. 8 (identity Jacobians, without the constant p) along SGD's path."""
    meta = [np.zeros_like(w) for w in params]
    theta = params
    loss, grads = np_loss_and_grads(theta, x, y)
    increases = 0
    for _ in range(STEPS):
        theta_next = [w - INNER_LR * g for w, g in zip(theta, grads)]
        loss_next, grads_next = np_loss_and_grads(theta_next, x, y)
        d_theta = [b - a for a, b in zip(theta, theta_next)]
        d_f = loss_next - loss if use_loss else 0.0
        increases += d_f > 0
        sq = sum(np.sum(d ** 2) for d in d_theta) + d_f ** 2
        if stabilizer and use_loss:
            d_f = -abs(d_f)
        scale = 1 / np.sqrt(sq) if p == 1 else 1.0
        meta = [m - scale * (d_f * g + d)
                for m, g, d in zip(meta, grads, d_theta)]
        theta, loss, grads = theta_next, loss_next, grads_next
    return meta, increases


@pytest.mark.parametrize(
    "metric,use_loss,stabilizer",
    list(itertools.product(["length", "energy"], [True, False], [True, False])))
def test_meta_gradient_matches_numpy(float64, metric, use_loss, stabilizer):
    batch = task_batch(num_tasks=2, dtype="float64", seed=3)
    meta = tfmeta.Leap(mlp([2, 5, 1]), metric=metric,
                       loss_in_manifold=use_loss, stabilizer=stabilizer,
                       inner_optimizer=keras.optimizers.SGD(INNER_LR),
                       inner_steps=STEPS)
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before, after = one_meta_step(meta, batch)
    expected = [np.zeros_like(w) for w in before]
    total_increases = 0
    for t in range(2):
        g, increases = np_leap_gradient(
            before, batch["support_x"][t], batch["support_y"][t],
            1 if metric == "length" else 2, use_loss, stabilizer)
        total_increases += increases
        expected = [e + gi / 2 for e, gi in zip(expected, g)]
    if use_loss:  # the path must climb somewhere for the stabilizer to matter
        assert total_increases > 0
    for b, a, e in zip(before, after, expected):
        np.testing.assert_allclose(b - a, e, rtol=1e-9, atol=1e-12)


def test_energy_without_loss_or_stabilizer_is_reptile():
    """Same init, data and minibatch draws: identical meta-steps (1e-6)."""
    batch = task_batch(num_tasks=3, support=12, seed=1)
    results = []
    for cls, kwargs in ((tfmeta.Leap, dict(metric="energy",
                                           loss_in_manifold=False,
                                           stabilizer=False)),
                        (tfmeta.Reptile, {})):
        meta = cls(mlp([2, 8, 1]), inner_optimizer=keras.optimizers.SGD(0.1),
                   inner_steps=10, inner_batch_size=4, seed=7, **kwargs)
        meta.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        results.append(one_meta_step(meta, batch))
    (before_leap, after_leap), (before_rep, after_rep) = results
    for b1, b2 in zip(before_leap, before_rep):
        np.testing.assert_array_equal(b1, b2)
    moved = sum(np.abs(a - b).sum() for a, b in zip(after_rep, before_rep))
    assert moved > 1e-3
    for a1, a2 in zip(after_leap, after_rep):
        np.testing.assert_allclose(a1, a2, rtol=0, atol=1e-6)


def test_full_leap_differs_from_reptile():
    """The loss term changes the meta-gradient (guards against a no-op)."""
    batch = task_batch(num_tasks=2, seed=2)
    steps = []
    for cls in (tfmeta.Leap, tfmeta.Reptile):
        meta = cls(mlp([2, 8, 1]), inner_optimizer=keras.optimizers.SGD(0.3),
                   inner_steps=5)
        meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        before, after = one_meta_step(meta, batch)
        steps.append(np.concatenate([(b - a).ravel()
                                     for b, a in zip(before, after)]))
    assert np.abs(steps[0] - steps[1]).max() > 1e-3


def test_path_length_is_logged():
    batch = task_batch()
    meta = tfmeta.Leap(mlp([2, 4, 1]), inner_steps=3)
    meta.compile(optimizer="sgd", loss="mse")
    history = meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1,
                       verbose=0)
    assert history.history["path_length"][0] > 0


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="Unknown Leap metric 'lenght'"):
        tfmeta.Leap(mlp([2, 4, 1]), metric="lenght")


class ThetaLeap(tfmeta.Leap):
    """Leap whose hook reads theta_i and theta_{i+1} (no ``d_theta``)."""

    def flat_hook(self):
        increment = functools.partial(tfmeta.leap.flat_increment,
                                      **self.leap_options())
        return lambda state, i, *args: increment(state, *args)


@pytest.mark.parametrize("inner", [  # the others: test_update_with_increments
    keras.optimizers.SGD(0.3), keras.optimizers.Adam(0.05)])
def test_hook_on_the_increments_is_the_hook_on_theta(float64, inner):
    """Leap's hook reads the update's increments (``d_theta``), not theta_i:
    the same meta-gradient as from theta_{i+1} - theta_i."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=5)
    steps = []
    for cls in (tfmeta.Leap, ThetaLeap):
        meta = cls(mlp([2, 5, 1]), inner_optimizer=inner.from_config(
            inner.get_config()), inner_steps=4)
        meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        before, after = one_meta_step(meta, batch)
        steps.append([b - a for b, a in zip(before, after)])
    assert tfmeta.Leap(mlp([2, 5, 1])).flat_hook().takes_increments
    assert max(np.abs(s).max() for s in steps[0]) > 1e-3
    for a, b in zip(*steps):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("inner", [
    keras.optimizers.SGD(0.3), keras.optimizers.SGD(0.2, momentum=0.9),
    keras.optimizers.SGD(0.2, momentum=0.9, nesterov=True),
    keras.optimizers.Adam(0.05), keras.optimizers.RMSprop(0.02, momentum=0.5)])
def test_update_with_increments(inner):
    """``new = params + increments`` and ``new`` is ``update``'s result."""
    opt = tfmeta.inner_optimizers.from_keras(inner)
    rng = np.random.default_rng(0)
    params = [tf.constant(rng.normal(size=s), tf.float32) for s in ((3, 2), (2,))]
    grads = [tf.constant(rng.normal(size=s), tf.float32) for s in ((3, 2), (2,))]
    state = opt.init(params)
    for step in range(3):
        new, incs, state2 = opt.update_with_increments(
            tf.constant(step), grads, params, state)
        plain, _ = opt.update(tf.constant(step), grads, params, state)
        for n, p, d, q in zip(new, params, incs, plain):
            np.testing.assert_array_equal(n.numpy(), q.numpy())
            np.testing.assert_allclose(n.numpy(), (p + d).numpy(),
                                       rtol=1e-6, atol=1e-7)
            assert np.abs(d.numpy()).max() > 0
        params, state = new, state2
