"""Warp-RNN (WarpGrad, section 4.3 and appendix I, eq. 20): a task RNN whose
weights a meta-LSTM warp layer modulates at every time step."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import (as_dataset, assert_export_adapts_like_meta,
                      assert_warp_gradient_matches_finite_differences,
                      eq12_by_hand)
from tfmeta import layers as L
from tfmeta.warpgrad import WarpGrad, partition

STEPS, FEATURES = 4, 2


def rnn_learner(seed=0, units=3, meta_units=2, **kwargs):
    """WarpRNN(units) -> Dense(1) on (STEPS, FEATURES) sequences."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((STEPS, FEATURES)),
        L.WarpRNN(units, meta_units=meta_units, name="wrnn", **kwargs),
        keras.layers.Dense(1, name="head")], name="warp_rnn_learner")


def sequence_tasks(num_tasks=2, support=6, query=5, seed=0, dtype="float32"):
    rng = np.random.default_rng(seed)
    batch = {"support_x": rng.normal(size=(num_tasks, support, STEPS,
                                           FEATURES)),
             "support_y": rng.normal(size=(num_tasks, support, 1)),
             "query_x": rng.normal(size=(num_tasks, query, STEPS, FEATURES)),
             "query_y": rng.normal(size=(num_tasks, query, 1))}
    return {k: v.astype(dtype) for k, v in batch.items()}


def make(learner, lr=0.3, steps=2, **kwargs):
    meta = WarpGrad(learner, inner_optimizer=keras.optimizers.SGD(lr),
                    inner_steps=steps, **kwargs)
    meta.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    return meta


def names(variables):
    return [v.path.split("/", 1)[1] for v in variables]


def test_untrained_warp_rnn_is_the_plain_rnn_and_modulation_changes_it():
    """P = p = 0: every U_j is the identity, the layer is keras SimpleRNN
    with the same W, V, b; a non-zero projection changes the output; the
    paper's literal U = diag(tanh(P z)) (offset 0) is available."""
    x = np.random.default_rng(0).normal(size=(3, 5, 2)).astype("float32")
    keras.utils.set_random_seed(0)
    warp = L.WarpRNN(4, meta_units=3, return_sequences=True)
    warp(x)
    plain = keras.layers.SimpleRNN(4, return_sequences=True)
    plain(x)
    rng = np.random.default_rng(1)
    for mine, theirs in zip(warp.task_variables, plain.cell.weights):
        value = rng.normal(size=mine.shape).astype("float32") * 0.5
        mine.assign(value)
        theirs.assign(value)
    assert warp(x).shape == (3, 5, 4)
    np.testing.assert_allclose(warp(x).numpy(), plain(x).numpy(), atol=1e-5)
    cell = warp.cell
    cell.modulation_kernel.assign(
        rng.normal(size=cell.modulation_kernel.shape).astype("float32"))
    assert np.abs(warp(x).numpy() - plain(x).numpy()).max() > 1e-2
    literal = L.WarpRNN(4, meta_units=3, modulation_offset=0.0)
    assert literal(x).shape == (3, 4)
    assert np.abs(literal(x).numpy()).max() == 0.0  # U = tanh(0) = 0
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(warp))
    config = again.get_config()
    assert (config["units"], config["meta_units"], config["return_sequences"],
            config["modulation_offset"]) == (4, 3, True, 1.0)


def test_partition_puts_the_rnn_weights_with_the_task_and_rejects_bad_input():
    learner = rnn_learner()
    task, warp = partition(learner)
    assert names(task) == ["wrnn/rnn/cell/kernel",
                           "wrnn/rnn/cell/recurrent_kernel",
                           "wrnn/rnn/cell/bias", "head/kernel", "head/bias"]
    assert names(warp) == ["wrnn/rnn/cell/modulation_kernel",
                           "wrnn/rnn/cell/modulation_bias",
                           "wrnn/rnn/cell/meta_lstm/kernel",
                           "wrnn/rnn/cell/meta_lstm/recurrent_kernel",
                           "wrnn/rnn/cell/meta_lstm/bias"]
    # P projects the meta-LSTM state to U1 (features) and U2..U5 (units)
    assert tuple(warp[0].shape) == (2, FEATURES + 4 * 3)
    make(learner)  # a WarpRNN changes the shape: not refused as a bad warp
    with pytest.raises(ValueError, match=r"\(batch, time, features\).*"
                       r"\(\?, 3\)"):
        keras.Sequential([keras.Input((3,)), L.WarpRNN(2)])
    with pytest.raises(ValueError, match="units must be a positive integer"):
        L.WarpRNN(0)


def test_adapt_moves_only_the_task_rnn_by_plain_sgd(float64):
    """adapt() = plain SGD on W, V, b and the head (independent tape
    computation through the modulated RNN), meta-LSTM and P bit-identical."""
    learner = rnn_learner(seed=1, modulation_initializer="glorot_uniform")
    meta = make(learner, lr=0.2)
    batch = sequence_tasks(num_tasks=1, dtype="float64", seed=2)
    x, y = batch["support_x"][0], batch["support_y"][0]
    adapted = meta.adapt(x, y, steps=3)
    task, warp = partition(learner)
    saved = [v.numpy() for v in learner.trainable_variables]
    mse = keras.losses.MeanSquaredError()
    for _ in range(3):
        with tf.GradientTape() as tape:
            loss = mse(y, learner(x, training=True))
        for var, g in zip(task, tape.gradient(loss, task)):
            var.assign(var - 0.2 * g)
    warp_ids = {id(v) for v in warp}
    for var, got, before in zip(learner.trainable_variables,
                                adapted.trainable_variables, saved):
        if id(var) in warp_ids:
            np.testing.assert_array_equal(got.numpy(), before)
        else:
            assert np.abs(got.numpy() - before).max() > 1e-6
            np.testing.assert_allclose(got.numpy(), var.numpy(), rtol=1e-9,
                                       atol=1e-12)


def test_warp_rnn_full_objective_matches_finite_differences(float64):
    """Eq. 11's gradient in the meta-LSTM and projection (second order
    through the task step of the recurrent net) vs central differences."""
    batch = sequence_tasks(num_tasks=2, dtype="float64", seed=3)
    meta = make(rnn_learner(seed=4, modulation_initializer="glorot_uniform"),
                lr=0.3, steps=2, inner_batch_size=4)
    buffer = meta.collect(batch)
    loss, grads = meta.warp_objective(batch, buffer)
    assert len(grads) == len(meta.warp_variables) == 5
    assert min(np.abs(g).max() for g in grads) > 1e-4
    assert_warp_gradient_matches_finite_differences(meta, batch, buffer, grads)


def test_warp_rnn_approximate_objective_is_eq12(float64):
    """Eq. 12 (the paper's Warp-RNN objective) recomputed with the Keras
    variables: theta' = sg[theta_k - alpha grad L_task(theta_k)], then
    grad_phi L_meta(theta'); it differs from eq. 11."""
    batch = sequence_tasks(num_tasks=2, dtype="float64", seed=8)
    lr = 0.3
    learner = rnn_learner(seed=6, modulation_initializer="glorot_uniform")
    approx = make(learner, lr=lr, steps=2, objective="approximate")
    full = make(learner, lr=lr, steps=2)
    buffer = approx.collect(batch)
    _, got = approx.warp_objective(batch, buffer)
    _, got_full = full.warp_objective(batch, buffer)
    expected = eq12_by_hand(learner, batch, buffer, lr)
    assert min(np.abs(g).max() for g in expected) > 1e-4
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    assert max(np.abs(a - b).max() for a, b in zip(got, got_full)) > 1e-5


def test_continual_meta_training_and_export_round_trip(tmp_path):
    """The paper's set-up (eq. 12, Algorithm 3, phi every eta steps) moves
    phi and theta; the export adapts with the warp fixed and predicts as
    ``meta.adapt(...).predict``; ``tfmeta.load`` rebuilds the Warp-RNN."""
    learner = rnn_learner(seed=5)
    meta = make(learner, lr=0.2, steps=1, objective="approximate",
                meta_training="continual", replay_batch_size=2, eval_steps=3)
    _, warp = partition(learner)
    phi0 = [v.numpy() for v in warp]
    meta.fit(as_dataset(sequence_tasks(seed=6)).repeat(), epochs=1,
             steps_per_epoch=2, verbose=0)
    assert int(meta.warp_count.numpy()) == 0  # phi stepped after eta = 2
    assert max(np.abs(v.numpy() - p).max() for v, p in zip(warp, phi0)) > 1e-6
    batch = sequence_tasks(num_tasks=1, seed=7)
    sx, sy, qx = (batch["support_x"][0], batch["support_y"][0],
                  batch["query_x"][0])
    path = meta.export(str(tmp_path / "warp_rnn"))
    assert_export_adapts_like_meta(meta, path, sx, sy, qx)
    again = tfmeta.load(path)
    assert isinstance(again.learner.layers[0], L.WarpRNN)
    np.testing.assert_allclose(again.learner(qx).numpy(),
                               learner(qx).numpy(), rtol=1e-6)
