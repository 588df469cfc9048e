"""The checkpointed inner loop (``checkpoint_every``): the meta-gradient of
MAML, Meta-SGD and Warp-MAML is the plain path's (float64, to 1e-6), for
segment lengths that do and do not divide K, longer than K and "sqrt";
bad values are refused."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, mlp, task_batch
from tfmeta import layers as L
from tfmeta.inner_loop import checkpoint_interval
from tfmeta.warpgrad import WarpGrad


def task_gradients(meta, batch, everies):
    """``task_meta_gradient`` of the first task (and its logs) for each
    ``checkpoint_every`` in ``everies``, traced into one function."""
    tasks = meta.task_batch(batch)
    task = {k: v[0] for k, v in tasks.items()}

    @tf.function
    def run():
        params, nontrainable = meta.current_state()
        out = []
        for every in everies:
            meta.checkpoint_every = every
            grads, logs, _ = meta.task_meta_gradient(
                params, nontrainable, task, tf.constant([3, 4], tf.int64))
            out.append((grads, logs))
        return out

    return [([g.numpy() for g in grads], {k: v.numpy() for k, v in logs.items()})
            for grads, logs in run()]


def assert_same(plain, checkpointed):
    (g0, logs0), (g1, logs1) = plain, checkpointed
    assert len(g0) == len(g1)
    assert max(np.abs(g).max() for g in g0) > 1e-3  # a gradient to compare
    for a, b in zip(g0, g1):
        np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-9)
    for key in logs0:
        np.testing.assert_allclose(logs1[key], logs0[key], rtol=1e-9)


def maml(cls, optimizer, every, steps, **kwargs):
    meta = cls(mlp([2, 5, 1], batch_norm=cls is tfmeta.MAML),
               inner_optimizer=optimizer, inner_steps=steps,
               inner_batch_size=4, checkpoint_every=every, **kwargs)
    meta.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return meta


def test_maml_gradient_is_unchanged(float64):
    """K = 7 (6 loop steps): c = 4 does not divide them, sqrt -> 3 does;
    SGD with momentum (optimizer state), batch norm (non-trainables) and
    minibatches (step-indexed draws) in the recomputed segments. Adam,
    K = 4 with c = 10 >= K (one segment)."""
    batch = task_batch(num_tasks=1, dtype="float64", seed=2)
    sgd = maml(tfmeta.MAML, keras.optimizers.SGD(0.2, momentum=0.5), None, 7)
    plain, *others = task_gradients(sgd, batch, (None, 4, "sqrt"))
    for checkpointed in others:
        assert_same(plain, checkpointed)
    adam = maml(tfmeta.MAML, keras.optimizers.Adam(0.05), None, 4)
    assert_same(*task_gradients(adam, batch, (None, 10)))


def test_meta_sgd_rate_gradients_are_unchanged(float64):
    """The per-parameter rates are variables the recomputed segments read."""
    batch = task_batch(num_tasks=1, dtype="float64", seed=4)
    meta = maml(tfmeta.MetaSGD, keras.optimizers.SGD(0.2), None, 5)
    rng = np.random.default_rng(0)
    for a in meta.task_lr:
        a.assign(rng.uniform(0.1, 0.4, a.shape))
    plain, checkpointed = task_gradients(meta, batch, (None, 3))
    n = len(meta.learner.trainable_variables)
    assert min(np.abs(g).max() for g in plain[0][n:]) > 1e-4
    assert_same(plain, checkpointed)


def test_warp_maml_gradient_is_unchanged(float64):
    """Warp-MAML: the hook (online warp gradients) runs in the forward pass
    only; the MAML term and the warp gradients equal the plain path's."""
    batch = task_batch(num_tasks=1, dtype="float64", seed=5)
    keras.utils.set_random_seed(0)
    learner = L.warped_sequential(
        (2,), [keras.layers.Dense(3, activation="tanh", name="h1")],
        lambda i, layer: L.ResidualMLPWarp(2, name=f"w{i + 1}"),
        head=[keras.layers.Dense(1, name="head")])
    meta = WarpGrad(learner, inner_optimizer=keras.optimizers.SGD(
        0.3, momentum=0.5), inner_steps=4, initialization="maml",
        checkpoint_every=2)
    meta.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    assert_same(*task_gradients(meta, batch, (None, 2)))


def test_config_round_trips():
    meta = tfmeta.MAML(mlp([2, 3, 1]), checkpoint_every="sqrt")
    assert meta.get_config()["checkpoint_every"] == "sqrt"
    assert tfmeta.MAML.from_config(meta.get_config()).checkpoint_every == "sqrt"


@pytest.mark.slow
def test_fit_step_matches():
    """One ``fit`` meta-step (float32, Grappler's second-order options):
    the same weights (slow: two fit graphs, ~8 s)."""
    batch = task_batch(num_tasks=1, seed=6)
    after = []
    for every in (None, 2):
        meta = maml(tfmeta.MAML, keras.optimizers.SGD(0.2), every, 2)
        meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
        after.append([v.numpy() for v in meta.learner.trainable_variables])
    for a, b in zip(*after):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


def test_bad_values_are_refused():
    for value in (0, -3, 2.5, True, "log", "SQRT"):
        with pytest.raises(ValueError, match="checkpoint_every must be"):
            checkpoint_interval(value)
    with pytest.raises(ValueError, match="checkpoint_every must be"):
        tfmeta.MAML(mlp([2, 3, 1]), checkpoint_every=0)


def test_first_order_methods_refuse_it():
    for cls in (tfmeta.FOMAML, tfmeta.Reptile, tfmeta.Leap):
        with pytest.raises(ValueError, match="checkpoint_every does not apply"):
            cls(mlp([2, 3, 1]), checkpoint_every=2)
    with pytest.raises(ValueError, match="checkpoint_every does not apply"):
        tfmeta.ANIL(mlp([2, 3, 1]), first_order=True, checkpoint_every=2)
    keras.utils.set_random_seed(0)
    learner = L.warped_sequential(
        (2,), [keras.layers.Dense(3, name="h1")],
        lambda i, layer: L.ResidualMLPWarp(2, name=f"w{i + 1}"),
        head=[keras.layers.Dense(1, name="head")])
    with pytest.raises(ValueError, match="initialization='maml'"):
        WarpGrad(learner, checkpoint_every=2, initialization="leap")


def test_method_option_is_typed():
    from tfmeta import config
    from tfmeta.errors import UsageError
    for method in ("maml", "metasgd", "anil"):
        assert config.parse_method_options(
            method, {"checkpoint_every": "sqrt"}) == {"checkpoint_every": "sqrt"}
        assert config.parse_method_options(
            method, {"checkpoint_every": "10"}) == {"checkpoint_every": 10}
    for bad in ("0", "root", "2.5"):
        with pytest.raises(UsageError, match="positive integer or sqrt"):
            config.parse_method_options("maml", {"checkpoint_every": bad})
    with pytest.raises(UsageError, match="unknown option 'checkpoint_every'"):
        config.parse_method_options("fomaml", {"checkpoint_every": "2"})
