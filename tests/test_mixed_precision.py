"""Mixed precision (Keras dtype policies ``mixed_bfloat16`` and
``mixed_float16``): float32 master weights and meta-gradients, low-precision
compute, float16 loss scaling, export."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from tfmeta.tasks import sine


@pytest.fixture
def policy():
    """Sets the global Keras dtype policy; float32 again afterwards."""
    yield keras.config.set_dtype_policy
    keras.config.set_dtype_policy("float32")


def leap(seed=0):
    meta = tfmeta.Leap(sine.mlp(hidden=(32, 32), seed=seed),
                       inner_optimizer=keras.optimizers.SGD(0.02),
                       inner_steps=5)
    meta.compile(optimizer=keras.optimizers.Adam(0.003), loss="mse")
    return meta


def test_bfloat16_sine_run_ends_near_the_float32_run(policy):
    """Leap on sine, 100 meta-steps: the held-out loss after adaptation of
    the bfloat16 run is within 10 % of the float32 run's (measured: ~2 %),
    and both learned (below 0.8 x the loss of the untrained initialization).
    Leap's meta-gradient (eq. 8) is accumulated in float32."""
    test = sine.tasks(40, support_size=10, query_size=50, seed=999)
    untrained = leap().evaluate_tasks(test)["loss_after"].mean()
    results = {}
    for name in ("float32", "mixed_bfloat16"):
        policy(name)
        meta = leap()
        assert meta.learner.compute_dtype == name.replace("mixed_", "")
        history = meta.fit(sine.dataset(meta_batch_size=5, seed=0), epochs=1,
                           steps_per_epoch=100, verbose=0)
        assert np.isfinite(history.history["loss"][-1])
        assert {v.dtype for v in meta.learner.trainable_variables} == {
            "float32"}  # master weights
        results[name] = meta.evaluate_tasks(test)["loss_after"].mean()
        assert results[name] < 0.8 * untrained, (results, untrained)
    assert abs(results["mixed_bfloat16"] - results["float32"]) \
        <= 0.1 * results["float32"], results


def test_leap_meta_gradient_sums_in_float32(policy):
    """Under mixed_bfloat16 the inner loop's parameters, Leap's eq. 8
    accumulator and so the meta-gradient stay float32."""
    policy("mixed_bfloat16")
    meta = leap()
    params, nontrainable = meta.current_state()
    task = {k: tf.constant(v[0]) for k, v in sine.tasks(1, seed=3).items()}
    grads, logs, _ = tf.function(meta.task_meta_gradient)(
        params, nontrainable, task, tf.constant([1, 2], tf.int64))
    assert {g.dtype for g in grads} == {tf.float32}
    assert logs["loss"].dtype == tf.float32


def maml(policy_name, policy, scale=None):
    """A sine MAML under ``policy_name``; ``scale``: the initial loss scale
    of an explicit LossScaleOptimizer (default: Keras wraps the outer
    optimizer itself under mixed_float16, initial scale 2**15)."""
    policy(policy_name)
    meta = tfmeta.MAML(sine.mlp(hidden=(8, 8), seed=1),
                       inner_optimizer=keras.optimizers.SGD(0.05),
                       inner_steps=2)
    outer = keras.optimizers.SGD(0.1)
    if scale is not None:
        outer = keras.optimizers.LossScaleOptimizer(outer, initial_scale=scale)
    meta.compile(optimizer=outer, loss="mse")
    return meta


def weights(meta):
    return [v.numpy() for v in meta.learner.trainable_variables]


BATCH = {k: v.numpy() for k, v in next(iter(
    sine.dataset(meta_batch_size=2, seed=3))).items()}


def test_float16_scales_unscales_and_skips_non_finite_steps(policy):
    """Under mixed_float16 the outer optimizer is a LossScaleOptimizer: the
    meta-gradient is computed from the scaled loss and unscaled, so one
    meta-step moves the weights as float32 does (were it not unscaled, or
    not scaled, the step would be 2**8 times too large or small).

    A scaled backward pass that overflows float16 gives a non-finite
    meta-gradient with a finite loss: that step is skipped (weights kept),
    the scale halved, and the loss reported (training goes on). A
    non-finite loss is skipped and reported as NaN, which stops ``fit``
    with ``NonFiniteLossError`` as in float32."""
    steps = {}
    for name, scale in (("float32", None), ("mixed_float16", 2.0 ** 8)):
        meta = maml(name, policy, scale)
        before = weights(meta)
        logs = meta.train_on_batch(BATCH, return_dict=True)
        steps[name] = [b - a for b, a in zip(before, weights(meta))]
        assert np.isfinite(logs["loss"])
    assert isinstance(meta.optimizer, keras.optimizers.LossScaleOptimizer)
    assert float(meta.loss_scale()) == 2.0 ** 8  # used, not lowered
    assert int(meta.optimizer.step_counter.numpy()) == 1  # a finite step
    for a, b in zip(steps["float32"], steps["mixed_float16"]):
        assert np.abs(a).max() > 1e-4
        np.testing.assert_allclose(b, a, rtol=0.05, atol=2e-3 * np.abs(a).max())

    meta.optimizer.dynamic_scale.assign(2.0 ** 100)  # overflows float16
    before = weights(meta)
    logs = meta.train_on_batch(BATCH, return_dict=True)
    assert np.isfinite(logs["loss"])  # not a failure: fit goes on
    for a, b in zip(before, weights(meta)):
        np.testing.assert_array_equal(a, b)
    assert float(meta.loss_scale()) == 2.0 ** 99
    bad = dict(BATCH, query_y=np.full_like(BATCH["query_y"], np.nan))
    logs = meta.train_on_batch(bad, return_dict=True)
    assert np.isnan(logs["loss"])  # what makes fit raise NonFiniteLossError
    for a, b in zip(before, weights(meta)):
        np.testing.assert_array_equal(a, b)
    assert float(meta.loss_scale()) == 2.0 ** 98


def test_methods_applying_their_own_gradients_refuse_float16(policy):
    policy("mixed_float16")
    learner = tfmeta.layers.warped_sequential(
        (1,), [keras.layers.Dense(4, activation="tanh")],
        lambda i, layer: tfmeta.layers.ResidualMLPWarp(2),
        head=[keras.layers.Dense(1)])
    meta = tfmeta.WarpGrad(learner)
    with pytest.raises(ValueError, match="use mixed_bfloat16"):
        meta.compile(optimizer="sgd", loss="mse")


def test_mixed_precision_export_serves(policy, tmp_path):
    """A bfloat16 export: the plain-TF signatures give the meta-learner's
    own predictions, adapted and not."""
    policy("mixed_bfloat16")
    meta = leap()
    sx, sy, qx = (BATCH[k][0] for k in ("support_x", "support_y", "query_x"))
    loaded = tf.saved_model.load(meta.export(str(tmp_path / "bf16")))
    served = loaded.signatures["serving_default"](x=qx)["predictions"]
    served = served.numpy().astype(np.float32)
    np.testing.assert_allclose(
        served, meta.predict(qx, verbose=0).astype(np.float32), rtol=1e-6,
        atol=1e-6)
    adapted = loaded.signatures["adapt_and_predict"](
        support_x=sx, support_y=sy, query_x=qx)["predictions"]
    adapted = adapted.numpy().astype(np.float32)
    want = meta.adapt(sx, sy).predict(qx, verbose=0).astype(np.float32)
    np.testing.assert_allclose(adapted, want, rtol=0, atol=2e-2)
    assert np.abs(adapted - served).max() > 1e-3  # adaptation did something
