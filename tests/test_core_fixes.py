"""The correctness bugs of issue 22, one test each (each failed before its
fix): continual WarpGrad's double optimizer step, offline WarpGrad's partial
updates after a non-finite one, library code changing process-wide state,
and lenient positive-integer validators."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, mlp, task_batch
from tfmeta import layers as L
from tfmeta.warpgrad import WarpGrad, warp_layers


def warped_mlp(seed=0):
    return L.warped_sequential(
        (2,), [keras.layers.Dense(
            3, activation="tanh", name="h1",
            kernel_initializer=keras.initializers.GlorotUniform(seed))],
        lambda i, layer: L.ResidualMLPWarp(
            2, output_initializer=keras.initializers.GlorotUniform(seed + 1),
            hidden_initializer=keras.initializers.GlorotUniform(seed + 2),
            name=f"w{i + 1}"),
        head=[keras.layers.Dense(
            1, name="head",
            kernel_initializer=keras.initializers.GlorotUniform(seed + 3))])


def test_continual_warpgrad_takes_one_optimizer_step_per_meta_step():
    """Bug 1: on warp-update steps the outer optimizer was applied twice
    (``iterations`` 6 after 4 meta-steps with eta = 2), and ``grad_norm``
    was never logged."""
    meta = WarpGrad(warped_mlp(), inner_optimizer=keras.optimizers.SGD(0.1),
                    meta_training="continual", replay_batch_size=2)
    meta.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    history = meta.fit(as_dataset(task_batch(num_tasks=2, seed=3)).repeat(),
                       epochs=1, steps_per_epoch=4, verbose=0)
    assert int(meta.optimizer.iterations.numpy()) == 4
    assert history.history["grad_norm"][0] > 0
    assert int(meta.warp_count.numpy()) == 0  # two warp updates done


def test_offline_warpgrad_restores_the_meta_step_on_a_non_finite_update():
    """Bug 2: a non-finite replay update left the updates before it applied;
    now the whole meta-step is undone (weights, optimizer state), as
    ``NonFiniteLossError`` promises."""
    meta = WarpGrad(warped_mlp(), inner_optimizer=keras.optimizers.SGD(0.1),
                    inner_steps=3, meta_training="offline",
                    replay_batch_size=1)
    # The first replay update is finite and throws phi to ~1e30; the next
    # one's loss overflows.
    meta.compile(optimizer=keras.optimizers.SGD(1e30), loss="mse")
    before = [v.numpy() for v in meta.learner.trainable_variables]
    with pytest.raises(tfmeta.NonFiniteLossError):
        meta.fit(as_dataset(task_batch(num_tasks=2, seed=1)), epochs=1,
                 steps_per_epoch=1, verbose=0)
    for var, value in zip(meta.learner.trainable_variables, before):
        np.testing.assert_array_equal(var.numpy(), value)
    assert int(meta.optimizer.iterations.numpy()) == 0


def test_maml_leaves_the_process_grappler_options_alone():
    """Bug 3: MAML.compile turned Grappler's arithmetic optimizer off for
    the whole process; now only MAML's own fit/evaluate graphs run without
    it (Warp-MAML likewise)."""
    def arithmetic():
        return tf.config.optimizer.get_experimental_options().get(
            "arithmetic_optimization", True)

    assert arithmetic()
    meta = tfmeta.MAML(mlp([2, 3, 1]), inner_steps=2)
    meta.compile(optimizer="sgd", loss="mse")
    assert arithmetic()
    assert meta.graph_options() == {"arithmetic_optimization": False}
    meta.fit(as_dataset(task_batch()), epochs=1, steps_per_epoch=1, verbose=0)
    assert arithmetic()
    from tfmeta.meta_learner import graph_options
    with graph_options(meta.graph_options()):
        assert not arithmetic()
    assert arithmetic()
    warp_maml = WarpGrad(warped_mlp(), initialization="maml")
    assert warp_maml.graph_options() == {"arithmetic_optimization": False}
    assert WarpGrad(warped_mlp()).graph_options() == {}


def test_surfaces_learner_leaves_the_random_generators_alone():
    """Bug 3: ``tasks.surfaces.learner`` reseeded every random generator;
    now its seed goes to its own initializer (same seed, same warp)."""
    from tfmeta.tasks import surfaces
    np.random.seed(123)
    want = np.random.rand()
    np.random.seed(123)
    a = surfaces.learner(seed=1)
    assert np.random.rand() == want
    b, c = surfaces.learner(seed=1), surfaces.learner(seed=2)
    for u, v, w in zip(a.get_weights(), b.get_weights(), c.get_weights()):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, w)
               for u, w in zip(a.get_weights(), c.get_weights()))


def test_warp_layers_found_through_public_structure():
    """Bug 3: warp layers are found through models' ``layers`` and layer
    attributes (no Keras private ``_layers``), also nested."""
    inner = warped_mlp()
    inputs = keras.Input((2,))
    outer = keras.Model(inputs, keras.layers.Dense(1)(inner(inputs)))
    assert [w.name for w in warp_layers(outer)] == ["w1"]
    assert warp_layers(inner) == warp_layers(outer)


@pytest.mark.parametrize("bad", [2.7, True, 0, "2"])
def test_one_positive_integer_validator(bad):
    """Bug 4: ``replay_batch_size`` took 2.7 (as 2) and True (as 1); the
    layers had validators of their own. All use ``tfmeta.checks``."""
    with pytest.raises(ValueError, match="replay_batch_size must be a "
                                         "positive integer"):
        WarpGrad(warped_mlp(), replay_batch_size=bad)
    with pytest.raises(ValueError, match="hidden_units must be a positive "
                                         "integer"):
        L.ResidualMLPWarp(hidden_units=bad)
    with pytest.raises(ValueError, match="num_heads must be a positive "
                                         "integer"):
        tfmeta.FineTune(mlp([2, 3, 1]), num_heads=bad)


def test_error_classes_have_one_home():
    from tfmeta import errors, export
    from tfmeta.tasks import omniglot
    assert export.ExportError is errors.ExportError is tfmeta.ExportError
    assert omniglot.OmniglotDataError is errors.OmniglotDataError
