"""Meta-transfer (tfmeta.transfer, MetaTransfer) and the cos -> sin tasks."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from tfmeta.tasks import cos_sin
from tfmeta.transfer import ENCODERS, GRADIENT_ENCODERS, make_encoder

from conftest import central_difference, mlp


def tiny_tasks(num_tasks=2, support=5, query=4, ds=1, es=1, dq=1, eq=1,
               seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    batch = {"support_x": rng.normal(size=(num_tasks, support, ds)),
             "support_y": rng.normal(size=(num_tasks, support, es)),
             "query_x": rng.normal(size=(num_tasks, query, dq)),
             "query_y": rng.normal(size=(num_tasks, query, eq))}
    return {k: tf.constant(v.astype(dtype)) for k, v in batch.items()}


def tiny_encoder(name, **options):
    sizes = {"hidden": (3, 3), "activation": "tanh"} \
        if name in GRADIENT_ENCODERS else {"hidden": 4}
    if name == "nonlinear":
        sizes["hyper_hidden"] = 4
    if name in ("mean", "max", "transformer"):
        sizes["depth"] = 1
    return make_encoder(name, k=2, seed=0, **{**sizes, **options})


def tiny_meta(name, **options):
    """A float64 MetaTransfer with tiny nets (call under ``float64``)."""
    keras.utils.set_random_seed(0)
    if name == "deep_kernel":
        encoder = make_encoder(name, output_dim=1, hidden=4, seed=0)
        encoder.build((1, 1), (1, 1))
        meta = tfmeta.MetaTransfer(encoder)
    else:
        encoder = tiny_encoder(name, **options)
        encoder.build((1, 1))
        decoder = tfmeta.transfer.Decoder(
            10, hidden=4, initial_params=np.zeros(10), seed=0)
        meta = tfmeta.MetaTransfer(encoder, decoder,
                                   mlp([1, 3, 1], activation="tanh"))
    meta.compile(keras.optimizers.SGD(0.1), loss="mse")
    return meta


@pytest.mark.parametrize("name,steps", [("context", 1), ("nonlinear", 1),
                                        ("linear", 1), ("context", 2)])
def test_gradient_codes_match_finite_differences(float64, name, steps):
    """Eqs. 4-6: the code is grad_z of the mean support loss (for two
    steps: the sum of the gradients at z_0 and z_1 = z_0 - lr g_0)."""
    encoder = tiny_encoder(name, steps=steps, lr=0.5)
    encoder.build((1, 1))
    t = tiny_tasks()
    code = encoder(t["support_x"], t["support_y"]).numpy()
    z = tf.Variable(encoder.initial_z(2))
    loss = lambda: float(tf.reduce_sum(  # noqa: E731 - tasks independent
        encoder.support_loss(t["support_x"], t["support_y"], z)))
    expected = central_difference(z, loss)
    if steps == 2:
        z.assign(z - 0.5 * expected)
        expected = expected + central_difference(z, loss)
    assert np.abs(expected).max() > 1e-3
    np.testing.assert_allclose(code, expected, rtol=1e-6, atol=1e-9)


def test_linear_code_is_v_times_the_parameter_gradient(float64):
    """Eq. 6: the linear code equals V grad_theta L with grad_theta L from
    central differences in theta."""
    encoder = tiny_encoder("linear")
    encoder.build((1, 1))
    t = tiny_tasks(num_tasks=1)
    code = encoder(t["support_x"], t["support_y"]).numpy()[0]
    zero = tf.zeros([1, 2], tf.float64)
    grad = central_difference(encoder.theta, lambda: float(
        encoder.support_loss(t["support_x"], t["support_y"], zero)[0]))
    np.testing.assert_allclose(code, encoder.V.numpy() @ grad, rtol=1e-6,
                               atol=1e-9)


@pytest.mark.parametrize("name,options", [
    ("context", {}), ("nonlinear", {}), ("linear", {}),
    ("context", {"steps": 2, "lr": 0.5}), ("transformer", {})])
def test_meta_gradient_matches_finite_differences(float64, name, options):
    """End to end (eq. 8): the query loss's gradient in every encoder and
    decoder weight, through the encoder's gradient (second order)."""
    meta = tiny_meta(name, **options)
    t = tiny_tasks()
    grads, logs, _ = meta.meta_gradient(t)
    loss = tf.function(lambda: meta.query_loss(t)[0])
    assert float(logs["loss"]) == pytest.approx(float(loss()))
    for var, grad in zip(meta.meta_variables, grads):
        numeric = central_difference(var, lambda: float(loss()))
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8,
                                   err_msg=var.path)
    encoder_grads = grads[:len(meta.encoder.trainable_variables)]
    assert max(np.abs(g).max() for g in encoder_grads) > 1e-4


def test_first_order_stops_the_gradient_through_the_encoder(float64):
    """first_order=True: the same codes and decoder gradient, zero gradient
    for the encoder (its weights get no meta-gradient)."""
    t = tiny_tasks()
    full = tiny_meta("linear")
    first = tiny_meta("linear", first_order=True)
    g_full, l_full, _ = full.meta_gradient(t)
    g_first, l_first, _ = first.meta_gradient(t)
    assert float(l_full["loss"]) == pytest.approx(float(l_first["loss"]))
    n = len(first.encoder.trainable_variables)
    assert all(np.all(g.numpy() == 0) for g in g_first[:n])
    assert any(np.abs(g.numpy()).max() > 1e-4 for g in g_full[:n])
    for a, b in zip(g_full[n:], g_first[n:]):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ENCODERS)
def test_encoders_are_invariant_to_the_order_of_support_points(name):
    meta = tiny_meta(name)
    t = tiny_tasks(support=7, dtype="float32")
    perm = np.random.default_rng(1).permutation(7)
    a = meta.transfer(t["support_x"], t["support_y"], t["query_x"])
    b = meta.transfer(tf.gather(t["support_x"], perm, axis=1),
                      tf.gather(t["support_y"], perm, axis=1), t["query_x"])
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert a.shape == (2, 4, 1)


def test_decoded_query_learner_is_the_keras_model_with_those_weights():
    keras.utils.set_random_seed(0)
    learner = cos_sin.query_mlp(seed=0)
    meta = tfmeta.MetaTransfer("linear", query_learner=learner, k=2,
                               support_dims=(1, 1), seed=0)
    meta.compile("adam", loss="mse")
    t = cos_sin.tasks(3, query_size=6, seed=5)
    weights = meta.query_weights(t["support_x"], t["support_y"])
    assert [w.shape for w in weights[0]] == \
        [tuple(v.shape) for v in learner.trainable_variables]
    assert not np.allclose(weights[0][0], weights[1][0])   # task-specific
    predictions = meta.transfer(t["support_x"], t["support_y"], t["query_x"])
    for i in range(3):
        model = meta.query_model(t["support_x"][i], t["support_y"][i])
        np.testing.assert_allclose(model.predict(t["query_x"][i], verbose=0),
                                   predictions[i], rtol=1e-5, atol=1e-5)
        clone = keras.models.clone_model(learner)
        clone.set_weights(weights[i])
        np.testing.assert_allclose(clone(t["query_x"][i]), predictions[i],
                                   rtol=1e-5, atol=1e-5)


def test_short_run_lowers_query_loss_and_weights_round_trip(tmp_path):
    """150 meta-steps of the linear encoder on cos -> sin: held-out query
    MSE well below the untrained model's; History, callbacks and
    save_weights/load_weights as for any Keras model."""
    keras.utils.set_random_seed(0)

    def build():
        meta = tfmeta.MetaTransfer("linear", query_learner=cos_sin.query_mlp(),
                                   k=2, support_dims=(1, 1), seed=0)
        meta.compile(keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
        return meta

    meta = build()
    test = cos_sin.tasks(50, seed=99)
    data = tf.data.Dataset.from_tensors({k: test[k] for k in tfmeta.TASK_KEYS})
    before = meta.evaluate(data, verbose=0, return_dict=True)
    log = tmp_path / "log.csv"
    history = meta.fit(cos_sin.dataset(10, seed=0), epochs=3,
                       steps_per_epoch=50, verbose=0,
                       callbacks=[keras.callbacks.CSVLogger(str(log))])
    after = meta.evaluate(data, verbose=0, return_dict=True)
    assert set(history.history) >= {"loss", "mae", "grad_norm"}
    assert len(log.read_text().splitlines()) == 4
    assert after["loss"] < 0.6 * before["loss"], (before, after)
    path = str(tmp_path / "meta.weights.h5")
    meta.save_weights(path)
    other = build()
    other.load_weights(path)
    np.testing.assert_allclose(
        other.transfer(test["support_x"], test["support_y"], test["query_x"]),
        meta.transfer(test["support_x"], test["support_y"], test["query_x"]),
        rtol=1e-6, atol=1e-6)


def test_non_finite_loss_stops_fit_and_keeps_weights():
    meta = tiny_meta("context")
    t = {k: v.numpy().astype("float32") for k, v in tiny_tasks().items()}
    t["query_y"][0, 0, 0] = np.nan
    before = [v.numpy() for v in meta.meta_variables]
    with pytest.raises(tfmeta.NonFiniteLossError, match="not applied"):
        meta.fit(tf.data.Dataset.from_tensors(t), epochs=1, steps_per_epoch=1,
                 verbose=0)
    for a, v in zip(before, meta.meta_variables):
        np.testing.assert_array_equal(a, v.numpy())


def test_bad_input_names_the_problem():
    meta = tiny_meta("linear")
    t = {k: v.numpy().astype("float32") for k, v in tiny_tasks().items()}
    fit = lambda batch: meta.fit(  # noqa: E731
        tf.data.Dataset.from_tensors(batch), epochs=1, steps_per_epoch=1,
        verbose=0)
    with pytest.raises(ValueError, match="disagree on the number of tasks"):
        fit({**t, "query_x": t["query_x"][:1], "query_y": t["query_y"][:1]})
    with pytest.raises(ValueError, match="query_x has 4 points per task but "
                                         "query_y has 3"):
        fit({**t, "query_y": t["query_y"][:, :3]})
    with pytest.raises(ValueError, match="built for 1 and 1"):
        fit({**t, "support_x": np.zeros((2, 5, 3), "float32")})
    with pytest.raises(ValueError, match="query learner expects inputs"):
        meta.transfer(t["support_x"], t["support_y"],
                      np.zeros((2, 4, 2), "float32"))
    with pytest.raises(ValueError, match="query_y has per-point shape"):
        fit({**t, "query_y": np.zeros((2, 4, 3), "float32")})
    with pytest.raises(ValueError, match="rank 3"):
        meta.transfer(t["support_x"][0], t["support_y"][0], t["query_x"])
    with pytest.raises(ValueError, match="unknown encoder 'lstm'"):
        make_encoder("lstm", k=2)
    for k in (0, -1, 1.5):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            make_encoder("linear", k=k)
    with pytest.raises(ValueError, match="needs k"):
        tfmeta.MetaTransfer("context", query_learner=cos_sin.query_mlp(),
                            support_dims=(1, 1))
    with pytest.raises(ValueError, match="gradient encoders"):
        tfmeta.MetaTransfer("max", query_learner=cos_sin.query_mlp(), k=2,
                            support_dims=(1, 1), first_order=True)
    with pytest.raises(ValueError, match="k does not apply"):
        make_encoder("deep_kernel", k=2, output_dim=1)
    with pytest.raises(ValueError, match="shared_embedding needs support and "
                                         "query inputs of one size"):
        make_encoder("deep_kernel", output_dim=6,
                     shared_embedding=True).build((5, 4), (7, 6))
    with pytest.raises(ValueError, match="query_learner is missing"):
        tfmeta.MetaTransfer("linear", k=2, support_dims=(1, 1))
    with pytest.raises(ValueError, match="encoder_steps must be a positive"):
        make_encoder("context", k=2, steps=0)
    with pytest.raises(ValueError, match="support_dims"):
        tfmeta.MetaTransfer("linear", query_learner=cos_sin.query_mlp(), k=2)


def test_cos_sin_tasks_follow_the_paper():
    batch = next(iter(cos_sin.dataset(64, support_size=10, query_size=7,
                                      seed=3)))
    a = batch["amplitude"].numpy()[:, None, None]
    b = batch["phase"].numpy()[:, None, None]
    assert a.min() >= 0.1 and a.max() <= 5 and b.min() >= -np.pi \
        and b.max() <= np.pi and b.min() < -1 and b.max() > 1
    sx, qx = batch["support_x"].numpy(), batch["query_x"].numpy()
    assert batch["query_y"].shape == (64, 7, 1)
    np.testing.assert_allclose(batch["support_y"], a * np.cos(sx + b),
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(batch["query_y"], a * np.sin(qx + b),
                               rtol=1e-5, atol=1e-5)
    noisy = cos_sin.tasks(200, support_size=50, sigma=1.5, seed=4)
    clean = cos_sin.tasks(200, support_size=50, sigma=0.0, seed=4)
    np.testing.assert_array_equal(noisy["query_y"], clean["query_y"])
    residual = noisy["support_y"] - clean["support_y"]
    assert abs(residual.std() - 1.5) < 0.05 and abs(residual.mean()) < 0.05
    again = next(iter(cos_sin.dataset(64, 10, 7, seed=3)))
    np.testing.assert_array_equal(again["support_y"], batch["support_y"])
    other = next(iter(cos_sin.dataset(64, 10, 7, seed=4)))
    assert not np.allclose(other["support_y"], batch["support_y"])
    with pytest.raises(ValueError, match="sigma must be a non-negative"):
        cos_sin.dataset(sigma=-1.0)
    with pytest.raises(ValueError, match="support_size must be a positive"):
        cos_sin.tasks(3, support_size=0)


@pytest.mark.parametrize("name", ["linear", "deep_kernel"])
def test_support_and_query_of_different_shapes(name):
    """support (x 2, y 3), query (x 4, y 2), as for the pendulums: a
    meta-step lowers the loss on its own batch and predictions have the
    query's shape."""
    keras.utils.set_random_seed(0)
    if name == "deep_kernel":
        meta = tfmeta.MetaTransfer(name, support_dims=(2, 3), query_dims=(4, 2),
                                   hidden=8, seed=0)
    else:
        meta = tfmeta.MetaTransfer(name, query_learner=mlp([4, 5, 2]), k=3,
                                   support_dims=(2, 3), seed=0, hidden=(4,))
    meta.compile(keras.optimizers.Adam(1e-2), loss="mse")
    t = {k: v.numpy() for k, v in tiny_tasks(3, ds=2, es=3, dq=4, eq=2,
                                             dtype="float32").items()}
    data = tf.data.Dataset.from_tensors(t)
    before = meta.evaluate(data, verbose=0, return_dict=True)["loss"]
    meta.fit(data.repeat(), epochs=1, steps_per_epoch=30, verbose=0)
    after = meta.evaluate(data, verbose=0, return_dict=True)["loss"]
    assert after < before
    assert meta.transfer(t["support_x"], t["support_y"],
                         t["query_x"]).shape == (3, 4, 2)
    with pytest.raises(ValueError, match="built for 2 and 3"):
        meta.transfer(t["query_x"], t["query_y"], t["query_x"])
