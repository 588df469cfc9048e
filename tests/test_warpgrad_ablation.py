"""WarpGrad's Table 3 ablation rows (appendix F): FiLM task embeddings
inside a two-layer warp (task parameters living in a warp layer) and the
meta-learned task learning rate alpha ("learned alpha", eq. 11)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import (as_dataset, assert_export_adapts_like_meta,
                      assert_warp_gradient_matches_finite_differences,
                      task_batch)
from tfmeta import layers as L
from tfmeta.warpgrad import WarpGrad, partition


def film_learner(seed=0, batch_norm=False):
    """Conv(tanh) -> ConvWarp(2 stacked 3x3 convs, FiLM between, residual)
    -> Dense head, on 4 x 4 x 1 inputs."""
    keras.utils.set_random_seed(seed)
    return L.warped_sequential(
        (4, 4, 1), [keras.layers.Conv2D(2, 3, padding="same",
                                        activation="tanh", name="c1")],
        lambda i, layer: L.ConvWarp(stacked=2, hidden_filters=3,
                                    residual=True, batch_norm=batch_norm,
                                    film=True, name="w1"),
        head=[keras.layers.Flatten(), keras.layers.Dense(1, name="head")])


def image_tasks(num_tasks=2, support=6, query=5, seed=0, dtype="float32"):
    """Regression tasks on 4 x 4 x 1 inputs (a task-batch dict)."""
    rng = np.random.default_rng(seed)
    batch = {"support_x": rng.normal(size=(num_tasks, support, 4, 4, 1)),
             "support_y": rng.normal(size=(num_tasks, support, 1)),
             "query_x": rng.normal(size=(num_tasks, query, 4, 4, 1)),
             "query_y": rng.normal(size=(num_tasks, query, 1))}
    return {k: v.astype(dtype) for k, v in batch.items()}


def warped_mlp(seed=0):
    """Dense(tanh) -> residual MLP warp -> Dense head (as test_warpgrad)."""
    keras.utils.set_random_seed(seed)
    return L.warped_sequential(
        (2,), [keras.layers.Dense(3, activation="tanh", name="h1")],
        lambda i, layer: L.ResidualMLPWarp(
            2, output_initializer="glorot_uniform", name=f"w{i + 1}"),
        head=[keras.layers.Dense(1, name="head")])


def make(learner, lr=0.3, steps=3, outer=1.0, momentum=0.0, **kwargs):
    meta = WarpGrad(learner, inner_optimizer=keras.optimizers.SGD(
        lr, momentum=momentum), inner_steps=steps, **kwargs)
    meta.compile(optimizer=keras.optimizers.SGD(outer), loss="mse")
    return meta


def manual_sgd(learner, x, y, lr, steps):
    """Independent adaptation: ``steps`` plain SGD steps with a tape on the
    Keras variables of the task parameters (partition), warps untouched;
    returns the adapted trainable values and restores the learner."""
    task_vars, _ = partition(learner)
    saved = [v.numpy() for v in learner.trainable_variables]
    mse = keras.losses.MeanSquaredError()
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = mse(y, learner(x, training=True))
        for var, g in zip(task_vars, tape.gradient(loss, task_vars)):
            var.assign(var - lr * g)
    out = [v.numpy() for v in learner.trainable_variables]
    for var, value in zip(learner.trainable_variables, saved):
        var.assign(value)
    return out


# ------------------------------------------------------------------ FiLM
def test_film_warp_starts_at_zero_and_equals_the_plain_warp():
    """FiLM (gamma, beta) = 0: the two-layer warp is the same function as
    without FiLM on the same conv/BN weights; non-zero FiLM changes it."""
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")
    kwargs = dict(stacked=2, batch_norm=True, residual=True)
    keras.utils.set_random_seed(0)
    film = L.ConvWarp(film=True, **kwargs)
    film(x)
    plain = L.ConvWarp(**kwargs)
    plain(x)
    assert [tuple(v.shape) for v in film.task_variables] == [(6,), (6,)]
    assert all(not v.numpy().any() for v in film.task_variables)
    rel = lambda v: v.path.split("/", 1)[1]  # noqa: E731
    film_weights = {rel(v): v for v in film.weights}
    assert set(film_weights) - {rel(v) for v in plain.weights} == {
        "film/gamma", "film/beta"}
    rng = np.random.default_rng(1)
    for v in plain.weights:  # a non-trivial warp, the same in both
        value = v.numpy() + 0.3 * rng.normal(size=v.shape)
        v.assign(value)
        film_weights[rel(v)].assign(value)
    np.testing.assert_allclose(film(x, training=True).numpy(),
                               plain(x, training=True).numpy(), atol=1e-5)
    film.films[0].gamma.assign(rng.normal(size=6).astype("float32"))
    assert np.abs(film(x, training=True).numpy()
                  - plain(x, training=True).numpy()).max() > 1e-2
    # config round trip keeps the flag
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(film))
    assert again.get_config()["film"] is True
    with pytest.raises(ValueError, match=r"film=True .*needs stacked >= 2"):
        L.ConvWarp(film=True)


def test_film_variables_are_task_variables_and_adapt_moves_only_them(float64):
    """partition and task_mask put FiLM's gamma/beta with the task layers;
    adapt() moves them by plain SGD (independent tape computation) while
    every other warp variable stays bit-identical; with initialization=None
    a meta-step changes phi but leaves the FiLM initialization at 0."""
    learner = film_learner()
    task, warp = partition(learner)
    names = lambda vs: [v.path.split("/", 1)[1] for v in vs]  # noqa: E731
    assert names(task) == ["c1/kernel", "c1/bias", "w1/film/gamma",
                           "w1/film/beta", "head/kernel", "head/bias"]
    assert names(warp) == ["w1/conv/kernel", "w1/conv/bias",
                           "w1/conv_2/kernel", "w1/conv_2/bias"]
    meta = make(learner, lr=0.25, steps=2)
    film_ids = {id(v) for v in learner.layers[1].task_variables}
    assert [m for v, m in zip(learner.trainable_variables, meta.task_mask)
            if id(v) in film_ids] == [True, True]
    assert {id(v) for v in meta.meta_variables}.isdisjoint(film_ids)
    batch = image_tasks(num_tasks=1, dtype="float64", seed=1)
    x, y = batch["support_x"][0], batch["support_y"][0]
    adapted = meta.adapt(x, y, steps=3)
    expected = manual_sgd(learner, x, y, 0.25, 3)
    warp_ids = {id(v) for v in warp}
    for var, got, want in zip(learner.trainable_variables,
                              adapted.trainable_variables, expected):
        if id(var) in warp_ids:
            np.testing.assert_array_equal(got.numpy(), var.numpy())
        else:
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-9,
                                       atol=1e-12)
        if id(var) in film_ids:  # moved from 0
            assert np.abs(got.numpy()).max() > 1e-4
    phi0 = [v.numpy() for v in warp]
    meta.fit(as_dataset(image_tasks(dtype="float64", seed=2)), epochs=1,
             steps_per_epoch=1, verbose=0)
    assert max(np.abs(v.numpy() - p).max() for v, p in zip(warp, phi0)) > 1e-6
    assert all(not v.numpy().any() for v in learner.layers[1].task_variables)


def test_film_warp_gradient_matches_finite_differences(float64):
    """Eq. 11 with the FiLM embeddings in theta (adapted in the task step,
    stored in the buffer) vs central differences in phi."""
    batch = image_tasks(num_tasks=2, dtype="float64", seed=3)
    meta = make(film_learner(seed=1), lr=0.3, steps=2, inner_batch_size=4)
    buffer = meta.collect(batch)
    task, _ = partition(meta.learner)
    film = [i for i, v in enumerate(task) if "film" in v.path]
    assert len(buffer["theta"]) == len(task)  # theta includes the FiLM vars
    assert min(np.abs(buffer["theta"][i][1]).max() for i in film) > 1e-5
    loss, grads = meta.warp_objective(batch, buffer)
    assert len(grads) == len(meta.warp_variables) == 4
    assert min(np.abs(g).max() for g in grads) > 1e-3
    assert_warp_gradient_matches_finite_differences(meta, batch, buffer, grads)


def test_partition_refuses_task_variables_a_warp_does_not_own():
    class Stray(L.LinearWarp):
        @property
        def task_variables(self):
            return [other]

    other = keras.Variable(np.zeros(2, "float32"), name="elsewhere")
    keras.utils.set_random_seed(0)
    learner = L.warped_sequential(
        (2,), [keras.layers.Dense(2)], lambda i, layer: Stray(name="stray"),
        head=[keras.layers.Dense(1)])
    with pytest.raises(ValueError, match="warp layer 'stray' lists "
                       "task_variables .* not among its own"):
        partition(learner)


# --------------------------------------------------------- learned alpha
@pytest.mark.parametrize("momentum", [0.0, 0.5], ids=["sgd", "momentum"])
def test_task_lr_meta_gradient_matches_finite_differences(float64, momentum):
    """dL/d alpha of eq. 11 (the last entry of warp_objective's gradient)
    vs central differences in alpha, the buffer (theta_k, m_k) held fixed:
    the replayed step uses the current alpha."""
    batch = task_batch(num_tasks=2, support=6, query=5, dtype="float64",
                       seed=3)
    meta = make(warped_mlp(seed=2), lr=0.25, steps=3, momentum=momentum,
                inner_batch_size=4, learn_task_lr=True)
    buffer = meta.collect(batch)
    if momentum:
        assert max(np.abs(c).max() for c in buffer["carry"]) > 1e-3
    loss, grads = meta.warp_objective(batch, buffer)
    assert len(grads) == len(meta.warp_variables) + 1
    grad = grads[-1]
    assert abs(grad) > 1e-3
    eps = 1e-6
    losses = []
    for sign in (1, -1):
        meta.task_lr.assign(0.25 + sign * eps)
        losses.append(meta.warp_objective(batch, buffer)[0])
    numeric = (losses[0] - losses[1]) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)
    meta.task_lr.assign(0.4)
    assert abs(meta.warp_objective(batch, buffer)[0] - loss) > 1e-4


def test_task_lr_step_is_clipped_sgd_online_and_reported(float64):
    """Online (Algorithm 1): alpha <- alpha - 0.001 clip(g, +-0.001) with g
    the mean eq. 11 gradient over tasks and iterates; unclipped with a large
    clip; phi takes the outer optimizer's step; History reports task_lr."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=7)
    for clip, lr in ((0.001, 0.001), (10.0, 0.01)):
        meta = make(warped_mlp(seed=4), lr=0.25, steps=3,
                    learn_task_lr=True, task_lr_clip=clip,
                    task_lr_learning_rate=lr)
        assert meta.task_lr.numpy() == 0.25  # the inner SGD's lr
        _, grads = meta.warp_objective(batch, meta.collect(batch))
        g = grads[-1]
        assert abs(g) > 0.01
        phi = [v.numpy() for v in meta.warp_variables]
        history = meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1,
                           verbose=0)
        want = 0.25 - lr * np.clip(g, -clip, clip)
        np.testing.assert_allclose(meta.task_lr.numpy(), want, rtol=1e-12)
        assert history.history["task_lr"][0] == pytest.approx(want, rel=1e-6)
        for b, v, gp in zip(phi, meta.warp_variables, grads):
            np.testing.assert_allclose(b - v.numpy(), gp, rtol=1e-7,
                                       atol=1e-12)


def test_offline_replay_uses_the_current_task_lr(float64):
    """Algorithm 2, eta = 1: the second replayed entry is stepped with the
    alpha (and phi) that the first update left, recomputed here in both
    possible replay orders."""
    batch = task_batch(num_tasks=1, dtype="float64", seed=8)
    beta, lr_a = 0.5, 0.05
    learner = warped_mlp(seed=5)
    meta = make(learner, lr=0.25, steps=2, outer=beta, learn_task_lr=True,
                task_lr_clip=10.0, task_lr_learning_rate=lr_a,
                meta_training="offline")
    probe = make(learner, lr=0.25, steps=2, learn_task_lr=True)
    buffer = probe.collect(batch)  # full-batch steps: same buffer as fit's
    phi0 = [v.numpy() for v in meta.warp_variables]
    ends = []
    for order in ((0, 1), (1, 0)):
        probe.task_lr.assign(0.25)
        for e in order:
            _, g = probe.warp_objective(batch, buffer, [e])
            for var, gp in zip(probe.warp_variables, g):
                var.assign(var - beta * gp)
            probe.task_lr.assign(probe.task_lr - lr_a * g[-1])
        ends.append(([v.numpy() for v in probe.warp_variables],
                     probe.task_lr.numpy()))
        for var, value in zip(probe.warp_variables, phi0):
            var.assign(value)
    assert abs(ends[0][1] - ends[1][1]) > 1e-6
    stale = 0.25 - lr_a * sum(probe.warp_objective(batch, buffer, [e])[1][-1]
                             for e in (0, 1))
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    alpha = meta.task_lr.numpy()
    assert abs(alpha - stale) > 1e-6
    match = [i for i, (_, a) in enumerate(ends) if abs(a - alpha) < 1e-12]
    assert len(match) == 1, (alpha, ends)
    for var, want in zip(meta.warp_variables, ends[match[0]][0]):
        np.testing.assert_allclose(var.numpy(), want, rtol=1e-9, atol=1e-12)


def test_adapt_and_evaluate_use_the_current_task_lr(float64):
    """Change the variable after tracing: adapt() and evaluate_tasks() step
    with the new alpha (independent SGD with that lr)."""
    learner = film_learner(seed=2)
    meta = make(learner, lr=0.25, steps=2, learn_task_lr=True)
    batch = image_tasks(num_tasks=1, dtype="float64", seed=4)
    x, y = batch["support_x"][0], batch["support_y"][0]
    meta.adapt(x, y, steps=3)  # traced with alpha = 0.25
    meta.task_lr.assign(0.0625)
    adapted = meta.adapt(x, y, steps=3)
    expected = manual_sgd(learner, x, y, 0.0625, 3)
    for got, want in zip(adapted.trainable_variables, expected):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-9, atol=1e-12)
    query = keras.losses.MeanSquaredError()(
        batch["query_y"][0], adapted(batch["query_x"][0])).numpy()
    after = meta.evaluate_tasks(batch, steps=3)["loss_after"][0]
    assert after == pytest.approx(query, rel=1e-5)


def test_task_lr_and_film_survive_export_checkpoint_and_load(tmp_path):
    """The exported ``adapt`` uses alpha's value at export and adapts FiLM
    with the warps fixed; save_weights/load_weights and tfmeta.load restore
    alpha."""
    learner = film_learner(seed=3)
    meta = make(learner, lr=0.2, steps=2, learn_task_lr=True, eval_steps=3)
    meta.task_lr.assign(0.07)
    batch = image_tasks(num_tasks=1, seed=5)
    sx, sy, qx = batch["support_x"][0], batch["support_y"][0], \
        batch["query_x"][0]
    path = meta.export(str(tmp_path / "warp"))
    got, adapted = assert_export_adapts_like_meta(meta, path, sx, sy, qx)
    plain = WarpGrad(learner, inner_optimizer=keras.optimizers.SGD(0.2),
                     eval_steps=3)
    plain.compile(optimizer="sgd", loss="mse")
    assert np.abs(plain.adapt(sx, sy).predict(qx, verbose=0)
                  - got).max() > 1e-4  # alpha 0.2 would differ
    names = tfmeta.export.adapted_weight_names(learner)
    film_ids = {id(v) for v in learner.layers[1].task_variables}
    for name, var in zip(names, learner.trainable_variables):
        if id(var) in film_ids:
            assert np.abs(adapted[name].numpy()).max() > 1e-5
    assert tfmeta.export.read_metadata(path)["task_lr"] == pytest.approx(0.07)
    again = tfmeta.load(path)
    assert again.get_config()["learn_task_lr"] is True
    assert again.task_lr.numpy() == pytest.approx(0.07)
    # an ordinary checkpoint of the meta-learner
    meta.save_weights(str(tmp_path / "ckpt.weights.h5"))
    fresh = make(film_learner(seed=3), lr=0.2, steps=2, learn_task_lr=True)
    assert fresh.task_lr.numpy() == pytest.approx(0.2)
    fresh.load_weights(str(tmp_path / "ckpt.weights.h5"))
    assert fresh.task_lr.numpy() == pytest.approx(0.07)


def test_learned_task_lr_refuses_what_it_cannot_learn():
    with pytest.raises(ValueError, match=r"needs objective='full' \(eq. 11\)"):
        make(warped_mlp(), learn_task_lr=True, objective="approximate")
    with pytest.raises(ValueError, match="learn_task_lr=True meta-learns the "
                       "step size of a Keras SGD"):
        WarpGrad(warped_mlp(), objective="approximate", learn_task_lr=True,
                 inner_optimizer=keras.optimizers.Adam(0.1))
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    with pytest.raises(ValueError, match="constant inner learning rate"):
        WarpGrad(warped_mlp(), learn_task_lr=True,
                 inner_optimizer=keras.optimizers.SGD(schedule))
    with pytest.raises(ValueError, match="not 'continual'"):
        make(warped_mlp(), learn_task_lr=True, meta_training="continual")
    with pytest.raises(ValueError, match="task_lr_clip must be positive"):
        make(warped_mlp(), learn_task_lr=True, task_lr_clip=0.0)
    assert make(warped_mlp()).task_lr is None
