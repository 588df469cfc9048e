"""Bad input gets a clear error that names the problem; nothing saved is lost."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, mlp, task_batch
from tfmeta.tasks import sine


def compiled(cls=tfmeta.Reptile, learner=None, **kwargs):
    meta = cls(learner or mlp([2, 4, 1]), **kwargs)
    meta.compile(optimizer="sgd", loss="mse")
    return meta


def fit_once(meta, batch):
    return meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)


@pytest.mark.parametrize("key,shape,message", [
    ("support_x", (2, 6, 3), r"support_x has per-example shape \(3\) but the "
                             r"learner expects inputs of shape \(2\)"),
    ("query_x", (2, 5, 7), r"query_x has per-example shape \(7\)"),
    ("support_y", (2, 6, 4), r"support_y has per-example shape \(4\) but the "
                             r"learner outputs \(1\)"),
    ("support_y", (2, 5, 1), "support_x has 6 examples per task but support_y has 5"),
    ("query_y", (3, 5, 1), "disagree on the number of tasks"),
    ("support_x", (2, 0, 2), "the support split is empty"),
    ("query_x", (10,), r"query_x has shape \(10\); a task batch needs a leading"),
])
def test_task_shapes_that_do_not_fit_the_learner(key, shape, message):
    batch = task_batch()
    batch[key] = np.zeros(shape, "float32")
    if key == "support_x" and shape[1] == 0:
        batch["support_y"] = np.zeros((2, 0, 1), "float32")
    with pytest.raises(ValueError, match=message):
        fit_once(compiled(), batch)


def test_missing_task_key():
    batch = task_batch()
    del batch["query_y"]
    with pytest.raises(ValueError, match=r"missing \['query_y'\]"):
        fit_once(compiled(), batch)


def test_adapt_with_wrong_shapes():
    meta = compiled()
    with pytest.raises(ValueError, match=r"support_x has per-example shape \(5\)"):
        meta.adapt(np.zeros((4, 5), "float32"), np.zeros((4, 1), "float32"))
    with pytest.raises(ValueError, match="support_x has 4 examples but support_y"):
        meta.adapt(np.zeros((4, 2), "float32"), np.zeros((3, 1), "float32"))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        meta.adapt(np.zeros((4, 2), "float32"), np.zeros((4, 1), "float32"), steps=0)


@pytest.mark.parametrize("kwargs,message", [
    ({"inner_steps": 0}, "inner_steps must be a positive integer, got 0"),
    ({"inner_steps": -3}, "inner_steps must be a positive integer"),
    ({"inner_steps": 2.5}, "inner_steps must be a positive integer"),
    ({"eval_steps": 0}, "eval_steps must be a positive integer"),
    ({"inner_batch_size": 0}, "inner_batch_size must be a positive integer"),
    ({"inner_optimizer": keras.optimizers.SGD(-0.1)},
     "learning_rate must be positive"),
    ({"inner_optimizer": keras.optimizers.SGD(0.0)},
     "learning_rate must be positive"),
])
def test_bad_hyper_parameters(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tfmeta.Reptile(mlp([2, 4, 1]), **kwargs)


def test_learner_must_be_a_built_keras_model():
    with pytest.raises(TypeError, match="learner must be a keras.Model"):
        tfmeta.Leap(lambda x: x)
    with pytest.raises(ValueError, match="learner must be built"):
        tfmeta.Leap(keras.Sequential([keras.layers.Dense(1)]))


def test_compile_needs_a_loss_and_fit_needs_compile():
    meta = tfmeta.Leap(mlp([2, 4, 1]))
    with pytest.raises(RuntimeError, match="not compiled"):
        meta.adapt(np.zeros((3, 2), "float32"), np.zeros((3, 1), "float32"))
    with pytest.raises(ValueError, match="needs loss="):
        meta.compile(optimizer="sgd")


class Snapshots(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_train_batch_end(self, batch, logs=None):
        self.weights.append([v.numpy() for v in self.model.learner.trainable_variables])


@pytest.mark.parametrize("cls", [tfmeta.Leap, tfmeta.MAML, tfmeta.FineTune])
def test_non_finite_loss_stops_training_and_keeps_last_good_weights(cls):
    def poison(i, batch):  # meta-step 3 (0-based) gets a NaN target
        bad = tf.equal(i, 3)
        batch["support_y"] = tf.where(bad, np.nan, batch["support_y"])
        return batch

    data = sine.dataset(meta_batch_size=2, seed=0).enumerate().map(poison)
    meta = cls(sine.mlp(seed=0), inner_optimizer=keras.optimizers.SGD(0.01),
               inner_steps=3)
    meta.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    snapshots = Snapshots()
    with pytest.raises(tfmeta.NonFiniteLossError,
                       match=r"became nan at epoch 1, step 4.*not applied") as err:
        meta.fit(data, epochs=2, steps_per_epoch=10, verbose=0,
                 callbacks=[snapshots])
    assert err.value.step == 3
    assert len(err.value.history.history["loss"]) == 1
    good = snapshots.weights[2]
    assert any(np.abs(a - b).max() > 0 for a, b in zip(snapshots.weights[0], good))
    for expected, var in zip(good, meta.learner.trainable_variables):
        np.testing.assert_array_equal(expected, var.numpy())


def test_diverging_adaptation_is_reported():
    meta = compiled(inner_optimizer=keras.optimizers.SGD(1e12), inner_steps=20)
    batch = task_batch(num_tasks=1)
    with pytest.raises(FloatingPointError, match="adaptation diverged"):
        meta.adapt(batch["support_x"][0] * 100, batch["support_y"][0])


# --- outer learning rate, target ranks, NaN in evaluate_tasks (tfmeta.checks)
@pytest.mark.parametrize("optimizer,message", [
    (keras.optimizers.SGD(-1.0), r"learning_rate must be positive, got -1.0"),
    (keras.optimizers.Adam(0.0), r"learning_rate must be positive, got 0.0"),
    (keras.optimizers.SGD(float("nan")), r"must be positive, got nan"),
    (keras.optimizers.SGD(tfmeta.linear_annealing(-0.1, 10)),
     r"schedule's initial value must be positive, got -0.1"),
])
def test_outer_learning_rate_must_be_positive(optimizer, message):
    meta = tfmeta.Reptile(mlp([2, 4, 1]))
    with pytest.raises(ValueError, match=message):
        meta.compile(optimizer=optimizer, loss="mse")
    with pytest.raises((RuntimeError, ValueError), match="compile"):  # not half-done
        meta.fit(as_dataset(task_batch()), epochs=1, steps_per_epoch=1)


def test_scratch_may_have_a_zero_outer_learning_rate():
    meta = tfmeta.Scratch(mlp([2, 4, 1]))
    meta.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    meta.compile(optimizer=keras.optimizers.SGD(tfmeta.linear_annealing(0.1, 5)),
                 loss="mse")


def test_targets_of_another_rank_are_accepted_as_in_a_first_call():
    """[N, 1] then [N] targets (and back): the same adapted weights as a
    fresh meta-learner given [N] first (an independent computation)."""
    batch = task_batch(num_tasks=3)
    sx, sy = batch["support_x"][0], batch["support_y"][0]

    def fresh():
        meta = tfmeta.Reptile(mlp([2, 4, 1], seed=3), seed=0, inner_steps=3,
                              inner_optimizer=keras.optimizers.SGD(0.1))
        meta.compile(optimizer="sgd", loss="mse")
        return meta

    meta, reference = fresh(), fresh()
    meta.adapt(sx, sy)
    flat = meta.adapt(sx, sy.ravel())
    reference.adapt(sx, sy)  # the same seed-generator position
    expected = reference.adapt(sx, sy.ravel())
    for a, b in zip(flat.weights, expected.weights):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6)
    meta.adapt(sx, sy)  # and back

    meta = fresh()
    per_task = meta.evaluate_tasks(batch)
    flat_batch = dict(batch, support_y=batch["support_y"][..., 0],
                      query_y=batch["query_y"][..., 0])
    again = meta.evaluate_tasks(flat_batch)
    np.testing.assert_allclose(again["loss_before"], per_task["loss_before"],
                               rtol=1e-6)
    np.testing.assert_allclose(again["loss_after"], per_task["loss_after"],
                               rtol=1e-5)


def test_evaluate_tasks_warns_about_nan_tasks():
    batch = task_batch(num_tasks=3)
    batch["query_y"][1, 0, 0] = np.nan
    meta = compiled()
    with pytest.warns(RuntimeWarning, match=r"task\(s\) \[1\] have a non-finite"):
        losses = meta.evaluate_tasks(batch)
    assert np.isnan(losses["loss_after"][1])
    assert np.all(np.isfinite(np.delete(losses["loss_after"], 1)))
