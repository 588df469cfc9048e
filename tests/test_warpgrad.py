"""WarpGrad: warp layers, the task/warp partition, eq. 11 against finite
differences, eq. 12 against an independent computation, the offline replay
buffer, and meta-training on synthetic 2-D tasks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import (as_dataset, assert_warp_gradient_matches_finite_differences,
                      central_difference, eq12_by_hand, task_batch)
from tfmeta import layers as L
from tfmeta.warpgrad import WarpGrad, partition


def warped_mlp(hidden=3, seed=0, warp_init="glorot_uniform"):
    """Dense(tanh) -> residual MLP warp -> Dense head (appendix A(b))."""
    keras.utils.set_random_seed(seed)
    return L.warped_sequential(
        (2,), [keras.layers.Dense(hidden, activation="tanh", name="h1")],
        lambda i, layer: L.ResidualMLPWarp(
            2, output_initializer=warp_init, name=f"w{i + 1}"),
        head=[keras.layers.Dense(1, name="head")])


def make(learner, lr=0.3, steps=3, outer=1.0, momentum=0.0, **kwargs):
    meta = WarpGrad(learner, inner_optimizer=keras.optimizers.SGD(
        lr, momentum=momentum), inner_steps=steps, **kwargs)
    meta.compile(optimizer=keras.optimizers.SGD(outer), loss="mse")
    return meta


# ------------------------------------------------------------ layers
def test_partition_is_explicit_and_adapt_holds_warp_fixed():
    learner = warped_mlp()
    task, warp = partition(learner)
    assert [v.path.split("/")[1] for v in task] == ["h1", "h1", "head", "head"]
    assert {v.path.split("/")[1] for v in warp} == {"w1"} and len(warp) == 4
    meta = make(learner)
    assert [v.path for v in meta.warp_variables] == [v.path for v in warp]
    assert [v.path for v in meta.meta_variables] == [v.path for v in warp]
    batch = task_batch(num_tasks=1, seed=1)
    adapted = meta.adapt(batch["support_x"][0], batch["support_y"][0], steps=5)
    a_task, a_warp = partition(adapted)
    for before, after in zip(warp, a_warp):
        np.testing.assert_array_equal(before.numpy(), after.numpy())
    moved = [np.abs(b.numpy() - a.numpy()).max() for b, a in zip(task, a_task)]
    assert min(moved) > 1e-4
    # Warp-Leap/Warp-MAML also meta-learn the task initialization.
    both = make(learner, initialization="leap")
    assert len(both.meta_variables) == len(learner.trainable_variables)


def test_conv_warp_ablation_flags_and_identity_start():
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")
    plain = L.ConvWarp()
    np.testing.assert_allclose(plain(x).numpy(), x, atol=1e-6)  # identity init
    assert plain.conv.kernel.shape == (3, 3, 3, 3)
    assert L.ConvWarp(kernel_size=1)(x).shape == x.shape
    scaling = L.ConvWarp(scaling=True)
    scaling(x)
    assert [tuple(v.shape) for v in scaling.trainable_variables] == [(3,), (3,)]
    full = L.ConvWarp(batch_norm=True, activation="relu", residual=True)
    out = full(x, training=True).numpy()
    expected = x + np.maximum(  # residual + ReLU(BN(identity conv(x)))
        (x - x.mean((0, 1, 2))) / np.sqrt(x.var((0, 1, 2)) + 1e-3), 0)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # A conv learner built by interleaving: the warps are the partition.
    keras.utils.set_random_seed(0)
    learner = L.warped_sequential(
        (6, 6, 1),
        [keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
         keras.layers.MaxPooling2D()],
        lambda i, layer: L.ConvWarp(batch_norm=True, activation="relu",
                                    residual=True) if i == 0 else None,
        head=[keras.layers.Flatten(), keras.layers.Dense(2)])
    meta = WarpGrad(learner, inner_optimizer=keras.optimizers.SGD(0.1),
                    inner_steps=2)
    meta.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    _, warp = partition(learner)
    assert len(warp) == 4  # conv kernel, bias, BN scale, BN offset
    images = np.random.default_rng(1).normal(size=(8, 6, 6, 1)).astype("float32")
    labels = np.arange(8) % 2
    adapted = meta.adapt(images, labels, steps=3)
    for before, after in zip(warp, partition(adapted)[1]):
        np.testing.assert_array_equal(before.numpy(), after.numpy())


def test_conv_warp_two_stacked_convs():
    """``ConvWarp(stacked=2)`` (table 3's "2-layer 3 x 3 conv"): C -> 2C -> C
    convs that start as the identity (so an untrained warped learner trains
    exactly like the plain one), survive a config round-trip, and stay fixed
    during adaptation."""
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(0).normal(size=(4, 5, 5, 3)).astype("float32")
    two = L.ConvWarp(stacked=2, name="two")
    np.testing.assert_allclose(two(x).numpy(), x, atol=1e-5)
    assert [tuple(v.shape) for v in two.trainable_variables] == [
        (3, 3, 3, 6), (6,), (3, 3, 6, 3), (3,)]
    hidden = two.conv.kernel.numpy()[1, 1]          # A: 3 x 6, not [I 0]
    assert np.abs(hidden[:, 3:]).max() > 0.1
    three = L.ConvWarp(stacked=3, hidden_filters=8)
    np.testing.assert_allclose(three(x).numpy(), x, atol=1e-5)
    # config round-trip: same layer, same function once weights are copied
    config = two.get_config()
    assert (config["stacked"], config["hidden_filters"]) == (2, None)
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(two))
    assert isinstance(again, L.ConvWarp) and again.get_config() == config
    if not again.built:
        again.build(x.shape)
    for src, dst in zip(two.weights, again.weights):
        dst.assign(src.numpy() * 1.5)
        src.assign(src.numpy() * 1.5)
    np.testing.assert_allclose(again(x).numpy(), two(x).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="stacked"):
        L.ConvWarp(stacked=0)
    with pytest.raises(ValueError, match="scaling=True has no convolution"):
        L.ConvWarp(scaling=True, stacked=2)

    # An untrained stacked warp is plain SGD; its weights never move.
    def learner(warped):
        keras.utils.set_random_seed(3)
        glorot = keras.initializers.GlorotUniform
        task = [keras.layers.Conv2D(4, 3, padding="same", activation="relu",
                                    kernel_initializer=glorot(1), name="c1"),
                keras.layers.MaxPooling2D()]
        head = [keras.layers.Flatten(),
                keras.layers.Dense(2, kernel_initializer=glorot(2), name="out")]
        factory = ((lambda i, layer: L.ConvWarp(stacked=2) if i == 1 else None)
                   if warped else (lambda i, layer: None))
        return L.warped_sequential((6, 6, 1), task, factory, head=head)

    images = np.random.default_rng(1).normal(size=(8, 6, 6, 1)).astype("float32")
    labels = np.arange(8) % 2
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    warped, plain = learner(True), learner(False)
    meta = WarpGrad(warped, inner_optimizer=keras.optimizers.SGD(0.5),
                    inner_steps=3)
    meta.compile(optimizer="sgd", loss=loss)
    base = tfmeta.Scratch(plain, inner_optimizer=keras.optimizers.SGD(0.5),
                          inner_steps=3)
    base.compile(loss=loss)
    _, warp = partition(warped)
    before = [v.numpy() for v in warp]
    adapted = meta.adapt(images, labels, steps=3)
    reference = base.adapt(images, labels, steps=3)
    a_task, a_warp = partition(adapted)
    assert len(a_warp) == 4 and isinstance(adapted.layers[2], L.ConvWarp)
    for b, after in zip(before, a_warp):
        np.testing.assert_array_equal(b, after.numpy())
    for mine, ref in zip(a_task, reference.trainable_variables):
        np.testing.assert_allclose(mine.numpy(), ref.numpy(), atol=1e-5)
    moved = np.abs(a_task[0].numpy() - warped.trainable_variables[0].numpy())
    assert moved.max() > 1e-3


def test_warp_that_breaks_the_learner_is_rejected():
    with pytest.raises(ValueError, match=r"warp layer 'warp_squash' \(after "
                       r"task layer 'h1'\) maps shape \(\?, 4\) to \(\?, 3\)"):
        L.warped_sequential(
            (2,), [keras.layers.Dense(4, name="h1")],
            lambda i, layer: keras.layers.Dense(3, name="squash"),
            head=[keras.layers.Dense(1)])
    # A hand-built model with a shape-changing warp layer.
    inputs = keras.Input((2,))
    bad = L.warp(keras.layers.Dense(5, name="wide"))
    model = keras.Model(inputs, keras.layers.Dense(1)(bad(
        keras.layers.Dense(4)(inputs))))
    with pytest.raises(ValueError, match="warp layer 'warp_wide' maps shape "
                       r"\(None, 4\) to \(None, 5\)"):
        WarpGrad(model)
    with pytest.raises(ValueError, match="needs a learner with warp layers"):
        WarpGrad(tfmeta.tasks.sine.mlp())
    with pytest.raises(ValueError, match="objective='full'.*needs a Keras SGD"):
        WarpGrad(warped_mlp(), inner_optimizer=keras.optimizers.Adam(0.1))
    with pytest.raises(ValueError, match="Unknown WarpGrad objective"):
        WarpGrad(warped_mlp(), objective="exact")


# ------------------------------------------------------- meta-gradients
@pytest.mark.parametrize("momentum", [0.0, 0.5], ids=["sgd", "momentum"])
def test_full_objective_matches_finite_differences(float64, momentum):
    """Eq. 11 at the stored iterates theta_k (held fixed) vs central
    differences in phi; minibatched task steps and query batches."""
    batch = task_batch(num_tasks=2, support=6, query=5, dtype="float64", seed=3)
    meta = make(warped_mlp(seed=2), lr=0.3, steps=3, momentum=momentum,
                inner_batch_size=4)
    buffer = meta.collect(batch)
    loss, grads = meta.warp_objective(batch, buffer)
    assert max(np.abs(g).max() for g in grads) > 1e-3
    assert_warp_gradient_matches_finite_differences(meta, batch, buffer, grads)


def test_online_step_is_mean_warp_gradient_over_the_trajectory(float64):
    """Algorithm 1: the outer SGD step (lr 1) is minus the eq. 11 gradient
    averaged over tasks and iterates theta_0..theta_{K-1}."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=7)
    meta = make(warped_mlp(seed=4), steps=4)
    buffer = meta.collect(batch)
    _, grads = meta.warp_objective(batch, buffer)
    before = [v.numpy() for v in meta.warp_variables]
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    for b, v, g in zip(before, meta.warp_variables, grads):
        np.testing.assert_allclose(b - v.numpy(), g, rtol=1e-7, atol=1e-12)


def test_approximate_objective_is_eq12_with_explicit_stop_gradient(float64):
    """Eq. 12 recomputed with the Keras model's variables: theta' =
    sg[theta_k - alpha grad L_task(theta_k)], then grad_phi L_meta(theta')."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=5)
    lr = 0.3
    learner = warped_mlp(seed=3)
    full = make(learner, lr=lr, steps=3)
    approx = make(learner, lr=lr, steps=3, objective="approximate")
    buffer = approx.collect(batch)
    _, got = approx.warp_objective(batch, buffer)
    _, got_full = full.warp_objective(batch, buffer)
    expected = eq12_by_hand(learner, batch, buffer, lr)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    # The full objective's second-order term is not negligible here.
    gap = max(np.abs(a - b).max() for a, b in zip(got, got_full))
    assert gap > 1e-4


# ------------------------------------------------------------- offline
def test_offline_buffer_stores_the_trajectory_and_replays_it(float64):
    batch = task_batch(num_tasks=2, dtype="float64", seed=8)
    steps = 3
    meta = make(warped_mlp(seed=5), steps=steps, meta_training="offline",
                replay_batch_size=2 * steps)
    buffer = meta.collect(batch)
    assert list(buffer["task"]) == [0, 0, 0, 1, 1, 1]
    assert list(buffer["step"]) == [0, 1, 2, 0, 1, 2]
    init = [v.numpy() for v in meta.task_variables]
    for t in range(2):
        for k in range(steps):
            expected = init if k == 0 else [
                v.numpy() for v in partition(meta.adapt(
                    batch["support_x"][t], batch["support_y"][t], steps=k))[0]]
            for stored, value in zip(buffer["theta"], expected):
                np.testing.assert_allclose(stored[t * steps + k], value,
                                           rtol=1e-12, atol=1e-12)
        # plain SGD: no momentum term to carry
        assert max(np.abs(c).max() for c in buffer["carry"]) < 1e-12
    # eta = buffer size: one outer step with the mean over all entries.
    _, grads = meta.warp_objective(batch, buffer)
    before = [v.numpy() for v in meta.warp_variables]
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    for b, v, g in zip(before, meta.warp_variables, grads):
        np.testing.assert_allclose(b - v.numpy(), g, rtol=1e-7, atol=1e-12)
    assert int(meta.optimizer.iterations) == 1
    # eta = 1: one warp update per buffer entry (Algorithm 2).
    eta1 = make(warped_mlp(seed=5), steps=steps, meta_training="offline")
    eta1.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    assert int(eta1.optimizer.iterations) == 2 * steps


def test_momentum_buffer_is_stored(float64):
    """Appendix F: offline replay keeps the optimizer's momentum term."""
    batch = task_batch(num_tasks=1, dtype="float64", seed=9)
    meta = make(warped_mlp(seed=6), lr=0.2, steps=3, momentum=0.9)
    buffer = meta.collect(batch)
    theta = buffer["theta"]
    # theta_2 = theta_1 + carry_1 - lr grad_1 with carry_1 = 0.9 v_0 and
    # v_0 = -(lr grad_0) = theta_1 - theta_0.
    for th, c in zip(theta, buffer["carry"]):
        np.testing.assert_allclose(c[0], 0.0, atol=1e-12)
        np.testing.assert_allclose(c[1], 0.9 * (th[1] - th[0]), atol=1e-10)


def test_warp_leap_init_gradient_is_leap_eq17_online_and_offline(float64):
    """Eq. 17 without the loss term: the task part of the step is lambda
    times mean_tau -sum_k dtheta_k / ||dtheta_k|| along the warped
    trajectory; offline replay (eta = buffer size) sums the same per-entry
    increments."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=10)
    steps, lam = 3, 0.5
    steps_taken = {}
    for mode in ("online", "offline"):
        meta = make(warped_mlp(seed=7), lr=0.2, steps=steps,
                    initialization="leap", init_weight=lam,
                    loss_in_manifold=False, meta_training=mode,
                    replay_batch_size=2 * steps)
        before = [v.numpy() for v in meta.task_variables]
        if mode == "online":
            buffer = meta.collect(batch)
            finals = [partition(meta.adapt(batch["support_x"][t],
                                           batch["support_y"][t],
                                           steps=steps))[0] for t in range(2)]
        meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
        steps_taken[mode] = [(b - v.numpy()) / lam
                             for b, v in zip(before, meta.task_variables)]
    expected = [np.zeros_like(b) for b in before]
    for t in range(2):
        path = [[th[t * steps + k] for th in buffer["theta"]]
                for k in range(steps)]
        path.append([v.numpy() for v in finals[t]])
        for k in range(steps):
            delta = [b - a for a, b in zip(path[k], path[k + 1])]
            norm = np.sqrt(sum((d ** 2).sum() for d in delta))
            for acc, d in zip(expected, delta):
                acc -= d / norm / 2
    for mode in ("online", "offline"):
        for got, want in zip(steps_taken[mode], expected):
            np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-10)


def test_warp_maml_init_gradient_is_maml_gradient_with_phi_fixed(float64):
    """Eq. 14: the task-parameter part of the meta-gradient is lambda times
    MAML's gradient through the warped adaptation."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=11)
    learner = warped_mlp(seed=8)
    lam = 0.5
    meta = make(learner, steps=2, initialization="maml", init_weight=lam)
    task_vars, _ = partition(learner)
    saved = [v.numpy() for v in learner.trainable_variables]
    before = [v.numpy() for v in task_vars]
    meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    got = [(b - v.numpy()) / lam for b, v in zip(before, task_vars)]
    for var, value in zip(learner.trainable_variables, saved):
        var.assign(value)  # phi moved too: back to the pre-step point
    # MAML's gradient with finite differences of the evaluate() loss.
    for i in (0, len(task_vars) - 1):  # first kernel and the head's bias
        numeric = central_difference(task_vars[i], lambda: meta.evaluate(
            as_dataset(batch), verbose=0, return_dict=True)["loss"])
        np.testing.assert_allclose(got[i], numeric, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("meta_training", ["online", "continual"])
def test_meta_step_under_xla_equals_graph_mode(meta_training):
    """jit_compile=True gives the same meta-steps: the query minibatches'
    seed (a fold-in) names its algorithm, since XLA's automatic choice
    differs from TensorFlow's kernels' (it made eq. 11's meta-loss differ)."""
    batch = task_batch(num_tasks=2, seed=5)
    runs = []
    for jit_compile in (False, True):
        meta = WarpGrad(warped_mlp(), inner_optimizer=keras.optimizers.SGD(0.3),
                        inner_steps=3, inner_batch_size=4, seed=1,
                        meta_training=meta_training)
        meta.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse",
                     jit_compile=jit_compile)
        history = meta.fit(as_dataset(batch).repeat(), epochs=1,
                           steps_per_epoch=2, verbose=0)
        runs.append((history.history, [v.numpy() for v in meta.trainable_variables]))
    (graph, graph_w), (xla, xla_w) = runs
    for key in ("loss", "meta_loss"):
        assert xla[key][0] == pytest.approx(graph[key][0], rel=1e-5), key
    for a, b in zip(graph_w, xla_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_offline_meta_training_refuses_xla():
    meta = WarpGrad(warped_mlp(), meta_training="offline")
    with pytest.raises(ValueError, match="replay buffer whose size"):
        meta.compile(optimizer="sgd", loss="mse", jit_compile=True)


def test_continual_meta_training_algorithm_3(float64):
    """theta takes lambda x the task-loss gradient every step; phi takes the
    mean of the eq. 11 gradients at each step's theta every eta = 2 steps."""
    batch = task_batch(num_tasks=2, dtype="float64", seed=12)
    lam, beta = 0.5, 0.3
    learner = warped_mlp(seed=9)
    meta = make(learner, lr=0.2, steps=1, outer=beta, init_weight=lam,
                meta_training="continual", replay_batch_size=2)
    probe = make(learner, lr=0.2, steps=1)  # eq. 11 gradient at theta
    task_vars, warp_vars = partition(learner)
    mse = keras.losses.MeanSquaredError()
    phi0 = [v.numpy() for v in warp_vars]
    warp_grads = []
    for step in range(2):
        theta = [v.numpy() for v in task_vars]
        buffer = probe.collect(batch)  # steps=1: one entry per task, theta
        warp_grads.append(probe.warp_objective(batch, buffer)[1])
        expected = [np.zeros_like(t) for t in theta]
        for t in range(2):
            with tf.GradientTape() as tape:
                loss = mse(batch["support_y"][t], learner(batch["support_x"][t],
                                                          training=True))
            for acc, g in zip(expected, tape.gradient(loss, task_vars)):
                acc += g.numpy() / 2
        meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
        for before, var, g in zip(theta, task_vars, expected):
            np.testing.assert_allclose(var.numpy(), before - beta * lam * g,
                                       rtol=1e-9, atol=1e-12)
        if step == 0:  # phi waits for eta = 2 steps
            for before, var in zip(phi0, warp_vars):
                np.testing.assert_array_equal(var.numpy(), before)
    for before, var, g0, g1 in zip(phi0, warp_vars, *warp_grads):
        np.testing.assert_allclose(var.numpy(), before - beta * (g0 + g1) / 2,
                                   rtol=1e-8, atol=1e-12)


# ------------------------------------------------ synthetic 2-D tasks
class _Quadratic(keras.layers.Layer):
    """f(p) = sum_i s_i (p_i - c_i)^2, ill-conditioned (s = [1, 0.02])."""

    def call(self, point, center):
        scales = tf.constant([1.0, 0.02], point.dtype)
        return tf.reduce_sum(scales * tf.square(point - center), -1,
                             keepdims=True)


def _quadratic_learner():
    inputs = keras.Input((4,))
    point = tfmeta.tasks.surfaces.Point(name="point")(inputs[:, :2])
    point = L.LinearWarp(name="warp")(point)
    return keras.Model(inputs, _Quadratic(name="quadratic")(point, inputs[:, 2:]))


def _quadratic_tasks(num, seed):
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.uniform(-3, 3, (num, 2)),
                        rng.uniform(-1, 1, (num, 2))], 1)[:, None, :]
    x = x.astype("float32")
    y = np.zeros((num, 1, 1), "float32")
    return {"support_x": x, "support_y": y, "query_x": x, "query_y": y}


@pytest.mark.parametrize("objective", ["full", "approximate"])
def test_meta_training_beats_no_warping_on_held_out_2d_tasks(objective):
    """Ill-conditioned 2-D quadratics with random starts and centres: the
    identity warp is plain SGD; a short meta-training of a linear warp
    lowers the held-out loss after K steps."""
    keras.utils.set_random_seed(0)
    meta = WarpGrad(_quadratic_learner(), objective=objective,
                    inner_optimizer=keras.optimizers.SGD(0.4), inner_steps=10)
    meta.compile(optimizer=keras.optimizers.Adam(0.05),
                 loss=tfmeta.tasks.surfaces.value_loss)
    held_out = _quadratic_tasks(50, seed=100)
    plain_sgd = meta.evaluate_tasks(held_out)["loss_after"].mean()
    train = tf.data.Dataset.from_tensor_slices(
        {k: np.stack([v[i:i + 5] for i in range(0, 200, 5)])
         for k, v in _quadratic_tasks(200, seed=1).items()})
    meta.fit(train, epochs=1, verbose=0)
    warped = meta.evaluate_tasks(held_out)["loss_after"].mean()
    assert warped < 0.5 * plain_sgd, (warped, plain_sgd)


def test_surfaces_task_family_is_peaks_and_learner_starts_at_x0():
    """Appendix D's family contains MATLAB's ``peaks``; the point learner
    evaluates f at its start x0 before adaptation (identity warp)."""
    peaks = lambda x, y: (3 * (1 - x) ** 2 * np.exp(-x ** 2 - (y + 1) ** 2)  # noqa: E731
                          - 10 * (x / 5 - x ** 3 - y ** 5) * np.exp(-x ** 2 - y ** 2)
                          - np.exp(-(x + 1) ** 2 - y ** 2) / 3)
    c = np.array([1, 1, 1, 3, 10, 1 / 3, 5], "float64")
    for x, y in [(0.0, 0.0), (0.5, -1.2), (-2.0, 1.5)]:
        got = float(tfmeta.tasks.surfaces.surface(np.float64(x), np.float64(y), c))
        assert got == pytest.approx(peaks(x, y), rel=1e-12)
    tasks = tfmeta.tasks.surfaces.tasks(2, 3, seed=0)
    assert tasks["support_x"].shape == (6, 1, 9)
    x = tasks["support_x"][:, 0]
    model = tfmeta.tasks.surfaces.learner(warp=True)
    expected = tfmeta.tasks.surfaces.surface(x[:, 0], x[:, 1], x[:, 2:])
    np.testing.assert_allclose(model(x).numpy()[:, 0], expected, rtol=1e-5)
