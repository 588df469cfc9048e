"""Meta-SGD (tfmeta.MetaSGD): the per-parameter update against numpy, the
learning-rate and initialization gradients against central differences,
fit, export (which must use alpha) and tfmeta.load."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import (as_dataset, assert_exported_adapt_matches,
                      central_difference, fit_lowers_the_query_loss, mlp,
                      query_loss_after_adaptation, task_batch)


def _values(variables):
    return [v.numpy() for v in variables]


def test_alpha_starts_at_the_inner_rate_and_scales_each_entry():
    learner = mlp([2, 4, 1], seed=2)
    meta = tfmeta.MetaSGD(learner, inner_steps=1,
                          inner_optimizer=keras.optimizers.SGD(0.05))
    meta.compile(optimizer="adam", loss="mse")
    assert [a.shape for a in meta.task_lr] == [
        v.shape for v in learner.trainable_variables]
    assert all(np.all(a.numpy() == np.float32(0.05)) for a in meta.task_lr)
    rng = np.random.default_rng(0)
    for a in meta.task_lr:
        a.assign(rng.uniform(0.0, 0.2, a.shape).astype("float32"))
    batch = task_batch(num_tasks=1, seed=3)
    sx, sy = batch["support_x"][0], batch["support_y"][0]
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(learner(sx) - sy))
    grads = tape.gradient(loss, learner.trainable_variables)
    adapted = meta.adapt(sx, sy)
    for new, v, a, g in zip(adapted.trainable_variables,
                            learner.trainable_variables, meta.task_lr, grads):
        np.testing.assert_allclose(new.numpy(),
                                   v.numpy() - a.numpy() * g.numpy(),
                                   rtol=1e-5, atol=1e-6)


def test_refuses_what_it_cannot_learn_rates_for():
    with pytest.raises(ValueError, match="SGD inner optimizer; got Adam"):
        tfmeta.MetaSGD(mlp([2, 3, 1]), inner_optimizer=keras.optimizers.Adam())
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    with pytest.raises(ValueError, match="constant inner learning rate"):
        tfmeta.MetaSGD(mlp([2, 3, 1]),
                       inner_optimizer=keras.optimizers.SGD(schedule))


def test_rate_and_init_gradients_match_finite_differences(float64):
    batch = task_batch(num_tasks=2, dtype="float64", seed=4)
    meta = tfmeta.MetaSGD(mlp([2, 3, 1]), inner_steps=3,
                          inner_optimizer=keras.optimizers.SGD(0.3))
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    rng = np.random.default_rng(1)
    for a in meta.task_lr:  # distinct rates, so each entry matters
        a.assign(rng.uniform(0.1, 0.5, a.shape))
    before = _values(meta.meta_variables)
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    autodiff = [b - a for b, a in zip(before, _values(meta.meta_variables))]
    assert min(np.abs(g).max() for g in autodiff) > 1e-5
    for var, value in zip(meta.meta_variables, before):
        var.assign(value)
    objective = query_loss_after_adaptation(meta, batch)
    for var, grad in zip(meta.meta_variables, autodiff):
        numeric = central_difference(var, objective)
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)


def test_fit_lowers_the_query_loss_and_export_uses_alpha(tmp_path):
    train = task_batch(num_tasks=4, support=10, query=10, seed=1)
    meta = tfmeta.MetaSGD(mlp([2, 16, 1], seed=3), inner_steps=3,
                          inner_optimizer=keras.optimizers.SGD(0.1))
    meta.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
    fit_lowers_the_query_loss(meta, train)
    alphas = _values(meta.task_lr)
    assert max(np.abs(a - np.float32(0.1)).max() for a in alphas) > 1e-3

    path = meta.export(str(tmp_path / "metasgd"))
    sx, sy = train["support_x"][0], train["support_y"][0]
    out = assert_exported_adapt_matches(meta, path, sx, sy)
    names = tfmeta.export.adapted_weight_names(meta.learner)
    # With the initial rate everywhere instead, adaptation differs.
    plain = tfmeta.MetaSGD(meta.learner, inner_steps=3,
                           inner_optimizer=keras.optimizers.SGD(0.1))
    plain.compile(optimizer="sgd", loss="mse")
    gap = max(np.abs(out[n].numpy() - v.numpy()).max() for n, v in
              zip(names, plain.adapt(sx, sy).trainable_variables))
    assert gap > 1e-4
    again = tfmeta.load(path)
    assert type(again) is tfmeta.MetaSGD
    for a, b in zip(again.task_lr, alphas):
        np.testing.assert_array_equal(a.numpy(), b)


@pytest.mark.slow  # ~8 s: vectorizing the differentiated inner loop
def test_vectorized_tasks_give_the_same_step():
    """The rates are read inside ``tf.vectorized_map`` as in the loop."""
    batch = task_batch(num_tasks=3, seed=1)
    out = []
    for vectorize in (False, True):
        meta = tfmeta.MetaSGD(mlp([2, 5, 1]), inner_steps=2,
                              vectorize_tasks=vectorize,
                              inner_optimizer=keras.optimizers.SGD(0.1))
        meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
        before = _values(meta.meta_variables)
        meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
        out.append([b - a for b, a in zip(before,
                                          _values(meta.meta_variables))])
    assert np.abs(out[0][-1]).max() > 1e-6  # alpha's step is not zero
    for a, b in zip(*out):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
