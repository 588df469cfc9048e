"""MAML against finite differences; FOMAML and Reptile against direct
computations."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import (as_dataset, central_difference, mlp, one_meta_step,
                      requires_omniglot, task_batch)


def post_adaptation_query_loss(meta, batch):
    """The MAML objective at the current initialization (via evaluate)."""
    return meta.evaluate(as_dataset(batch), verbose=0, return_dict=True)["loss"]


@pytest.mark.parametrize("batch_norm", [False, True], ids=["mlp", "bn-mlp"])
def test_maml_meta_gradient_matches_finite_differences(float64, batch_norm):
    batch = task_batch(num_tasks=2, dtype="float64", seed=4)
    meta = tfmeta.MAML(mlp([2, 3, 1], batch_norm=batch_norm),
                       inner_optimizer=keras.optimizers.SGD(0.3),
                       inner_steps=3)
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    before, after = one_meta_step(meta, batch)
    autodiff = [b - a for b, a in zip(before, after)]
    for var, value in zip(meta.learner.trainable_variables, before):
        var.assign(value)  # finite differences around the pre-step weights
    for var, grad in zip(meta.learner.trainable_variables, autodiff):
        numeric = central_difference(
            var, lambda: post_adaptation_query_loss(meta, batch))
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # Second order matters here: FOMAML's gradient is measurably different.
    fomaml = tfmeta.FOMAML(meta.learner, inner_optimizer=keras.optimizers.SGD(0.3),
                           inner_steps=3)
    fomaml.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    f_before, f_after = one_meta_step(fomaml, batch)
    first_order = [b - a for b, a in zip(f_before, f_after)]
    gap = max(np.abs(f - s).max() for f, s in zip(first_order, autodiff))
    assert gap > 1e-4


def test_maml_refuses_vectorized_tasks_under_xla(monkeypatch):
    # (without checkpoint_every the vectorized inner loop is unrolled, and
    # XLA compiles it: tests/test_fast_path.py)
    meta = tfmeta.MAML(mlp([2, 4, 1]), inner_steps=2, vectorize_tasks=True,
                       checkpoint_every=1)
    with pytest.raises(ValueError, match="vectorize_tasks=True without XLA"):
        meta.compile(optimizer="sgd", loss="mse", jit_compile=True)
    # "auto" picks XLA where there is an accelerator: here it falls back.
    monkeypatch.setattr(type(meta), "_resolve_auto_jit_compile",
                        lambda self: True)
    with pytest.warns(UserWarning, match="not using XLA"):
        meta.compile(optimizer="sgd", loss="mse", jit_compile="auto")
    assert meta.jit_compile is False
    batch = task_batch(num_tasks=2, seed=3)
    assert np.isfinite(meta.train_on_batch(batch, return_dict=True)["loss"])


def test_fomaml_is_query_gradient_at_adapted_weights():
    batch = task_batch(num_tasks=1, seed=5)
    meta = tfmeta.FOMAML(mlp([2, 6, 1]), inner_optimizer=keras.optimizers.SGD(0.2),
                         inner_steps=4)
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse")
    adapted = meta.adapt(batch["support_x"][0], batch["support_y"][0], steps=4)
    with tf.GradientTape() as tape:
        pred = adapted(batch["query_x"][0], training=False)
        loss = keras.losses.MeanSquaredError()(batch["query_y"][0], pred)
    expected = tape.gradient(loss, adapted.trainable_variables)
    before, after = one_meta_step(meta, batch)
    for b, a, e in zip(before, after, expected):
        np.testing.assert_allclose(b - a, e.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("num_tasks", [1, 3], ids=["serial", "batched"])
def test_reptile_step(num_tasks):
    """phi <- phi + eps * mean_i(W_i - phi), W_i from adapt() (Alg. 1 and 2)."""
    batch = task_batch(num_tasks=num_tasks, seed=6)
    eps = 0.25
    meta = tfmeta.Reptile(mlp([2, 6, 1]), inner_optimizer=keras.optimizers.SGD(0.1),
                          inner_steps=5)
    meta.compile(optimizer=keras.optimizers.SGD(eps), loss="mse")
    adapted = [meta.adapt(batch["support_x"][t], batch["support_y"][t], steps=5)
               for t in range(num_tasks)]
    before, after = one_meta_step(meta, batch)
    for i, (b, a) in enumerate(zip(before, after)):
        target = np.mean([m.trainable_variables[i].numpy() for m in adapted], 0)
        np.testing.assert_allclose(a, b + eps * (target - b), rtol=1e-5,
                                   atol=1e-6)


def test_linear_annealing_reaches_zero():
    schedule = tfmeta.linear_annealing(1.0, 100)
    assert float(schedule(0)) == pytest.approx(1.0)
    assert float(schedule(50)) == pytest.approx(0.5)
    assert float(schedule(100)) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="steps must be at least 1"):
        tfmeta.linear_annealing(1.0, 0)


@requires_omniglot
def test_second_order_maml_on_the_leap_conv_net():
    """TF 2.21's Grappler AddOpsRewrite failed on this graph (20-way, 5 inner
    steps, meta-batch 2) with AlreadyExistsError; MAML.compile avoids it."""
    from tfmeta.tasks import omniglot
    data = omniglot.dataset(num_tasks=5, meta_batch_size=2, seed=0)
    meta = tfmeta.MAML(omniglot.leap_convnet(num_classes=20, seed=0),
                       inner_optimizer=keras.optimizers.SGD(0.1),
                       inner_steps=5, inner_batch_size=20)
    meta.compile(optimizer=keras.optimizers.SGD(0.1),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = meta.fit(data, epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert history.history["grad_norm"][0] > 0
