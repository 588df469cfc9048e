"""Meta-learners behave as Keras models: fit/evaluate, callbacks, History,
checkpoints, TensorBoard, BackupAndRestore, FineTune heads."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from conftest import as_dataset, mlp, task_batch
from tfmeta.tasks import sine


class Recorder(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batch_losses = []

    def on_train_batch_end(self, batch, logs=None):
        self.batch_losses.append(float(logs["loss"]))


def test_fit_records_meta_loss_in_history_and_callbacks(tmp_path):
    meta = tfmeta.Leap(sine.mlp(seed=0), inner_optimizer=keras.optimizers.SGD(0.02),
                       inner_steps=8)
    meta.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse",
                 metrics=[keras.metrics.MeanAbsoluteError(name="mae")])
    recorder = Recorder()
    history = meta.fit(
        sine.dataset(meta_batch_size=3), epochs=3, steps_per_epoch=4,
        verbose=0,
        callbacks=[recorder,
                   keras.callbacks.CSVLogger(str(tmp_path / "log.csv")),
                   keras.callbacks.TensorBoard(str(tmp_path / "tb")),
                   keras.callbacks.ModelCheckpoint(
                       str(tmp_path / "w.weights.h5"), save_weights_only=True)])
    for key in ("loss", "support_loss", "path_length", "mae"):
        assert len(history.history[key]) == 3
        assert all(np.isfinite(history.history[key]))
    assert len(recorder.batch_losses) == 12
    assert (tmp_path / "log.csv").read_text().count("\n") == 4
    assert any(f.startswith("events") for _, _, files in os.walk(tmp_path / "tb")
               for f in files)
    restored = tfmeta.Leap(sine.mlp(seed=1), inner_steps=8)
    restored.load_weights(str(tmp_path / "w.weights.h5"))
    for a, b in zip(restored.learner.trainable_variables,
                    meta.learner.trainable_variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_backup_and_restore_resumes(tmp_path):
    class Interrupt(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("interrupted")

    def make():
        meta = tfmeta.Reptile(sine.mlp(seed=0), inner_steps=4, seed=0)
        meta.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
        return meta

    backup = keras.callbacks.BackupAndRestore(str(tmp_path / "backup"))
    first = make()
    with pytest.raises(RuntimeError, match="interrupted"):
        first.fit(sine.dataset(seed=0), epochs=4, steps_per_epoch=2, verbose=0,
                  callbacks=[backup, Interrupt()])
    resumed = make()
    history = resumed.fit(sine.dataset(seed=0), epochs=4, steps_per_epoch=2,
                          verbose=0, callbacks=[backup])
    assert len(history.history["loss"]) == 2  # epochs 3 and 4 only
    assert int(resumed.optimizer.iterations.numpy()) == 8


def test_predict_and_call_use_the_initialization():
    meta = tfmeta.Reptile(mlp([2, 4, 1]))
    x = np.ones((3, 2), "float32")
    np.testing.assert_allclose(meta(x), meta.learner(x))


def test_adapt_returns_new_model_and_leaves_meta_unchanged():
    meta = tfmeta.FOMAML(mlp([2, 4, 1]), inner_optimizer=keras.optimizers.SGD(0.1))
    meta.compile(optimizer="sgd", loss="mse")
    batch = task_batch(num_tasks=1)
    before = [v.numpy() for v in meta.learner.trainable_variables]
    adapted = meta.adapt(batch["support_x"][0], batch["support_y"][0], steps=10)
    assert adapted is not meta.learner
    for b, v in zip(before, meta.learner.trainable_variables):
        np.testing.assert_array_equal(b, v.numpy())
    loss = lambda m: float(np.mean(  # noqa: E731
        (m.predict(batch["support_x"][0], verbose=0) - batch["support_y"][0]) ** 2))
    assert loss(adapted) < loss(meta.learner)


def test_finetune_multi_headed_pretraining():
    learner = mlp([2, 5, 3])
    meta = tfmeta.FineTune(learner, num_heads=4)
    meta.compile(optimizer=keras.optimizers.SGD(0.1),
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    rng = np.random.default_rng(0)
    batch = task_batch(num_tasks=2)
    batch["support_y"] = rng.integers(0, 3, size=(2, 6)).astype("int32")
    batch["query_y"] = rng.integers(0, 3, size=(2, 5)).astype("int32")
    batch["task_id"] = np.array([1, 3], "int32")
    heads = meta.head_kernels.numpy()
    own_head = learner.layers[-1].kernel.numpy()
    body = learner.layers[0].kernel.numpy()
    history = meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)
    assert "accuracy" in history.history
    moved = np.abs(meta.head_kernels.numpy() - heads).sum(axis=(1, 2))
    assert moved[1] > 0 and moved[3] > 0 and moved[0] == 0 and moved[2] == 0
    np.testing.assert_array_equal(learner.layers[-1].kernel.numpy(), own_head)
    assert np.abs(learner.layers[0].kernel.numpy() - body).max() > 0
    del batch["task_id"]
    with pytest.raises(ValueError, match="task_id"):
        meta.fit(as_dataset(batch), epochs=1, steps_per_epoch=1, verbose=0)


def test_classification_metrics_after_adaptation():
    meta = tfmeta.Reptile(mlp([2, 5, 3]), inner_optimizer=keras.optimizers.SGD(0.5),
                          inner_steps=20)
    meta.compile(optimizer="sgd",
                 loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                 metrics=["accuracy"])
    batch = task_batch(num_tasks=2, support=12, query=12)
    labels = (batch["support_x"][..., 0] > 0).astype("int32")
    batch.update(support_y=labels, query_x=batch["support_x"], query_y=labels)
    result = meta.evaluate(as_dataset(batch), verbose=0, return_dict=True)
    assert result["accuracy"] > 0.8
    assert "path_length" not in result


@pytest.mark.parametrize("cls,jit_compile", [(tfmeta.Leap, False),
                                             (tfmeta.MAML, False),
                                             (tfmeta.Reptile, True)])
def test_vectorized_tasks_give_the_same_meta_step(cls, jit_compile):
    """Batched tasks equal one task after another, also with the batched
    meta-step compiled by XLA, over two meta-steps (the second reuses the
    compiled step)."""
    batch = task_batch(num_tasks=4, seed=11)
    steps = []
    for vectorize in (False, True):
        meta = cls(mlp([2, 6, 1]), inner_optimizer=keras.optimizers.SGD(0.1),
                   inner_steps=4, inner_batch_size=3, seed=3,
                   vectorize_tasks=vectorize)
        meta.compile(optimizer=keras.optimizers.SGD(1.0), loss="mse",
                     jit_compile=jit_compile and vectorize)
        history = meta.fit(as_dataset(batch).repeat(), epochs=1,
                           steps_per_epoch=2, verbose=0)
        steps.append(([v.numpy() for v in meta.learner.trainable_variables],
                      history.history["loss"][0]))
    for a, b in zip(steps[0][0], steps[1][0]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    assert steps[0][1] == pytest.approx(steps[1][1], rel=1e-5)


@pytest.mark.parametrize("cls", [tfmeta.Leap, tfmeta.Reptile, tfmeta.FOMAML,
                                 tfmeta.MAML, tfmeta.FineTune, tfmeta.Scratch])
def test_xla_gives_the_same_meta_steps(cls):
    """compile(jit_compile=True) trains and evaluates as graph mode does
    (second-order MAML needs the inner loop's static bound under XLA), with
    minibatches of 4 of 6 support examples, so the seeds' draws matter."""
    batch = task_batch(num_tasks=2, support=6, seed=5)
    runs = []
    for jit_compile in (False, True):
        meta = cls(mlp([2, 4, 1]), inner_optimizer=keras.optimizers.SGD(0.3),
                   inner_steps=3, inner_batch_size=4, seed=1)
        meta.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse",
                     jit_compile=jit_compile)
        history = meta.fit(as_dataset(batch).repeat(), epochs=1,
                           steps_per_epoch=2, verbose=0)
        evaluated = meta.evaluate(as_dataset(batch), verbose=0,
                                  return_dict=True)
        runs.append((history.history["loss"][-1], evaluated["loss"],
                     [v.numpy() for v in meta.learner.trainable_variables]))
    (g_fit, g_eval, g_w), (x_fit, x_eval, x_w) = runs
    assert x_fit == pytest.approx(g_fit, rel=1e-5)
    assert x_eval == pytest.approx(g_eval, rel=1e-5)
    for a, b in zip(g_w, x_w):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_train_and_test_on_batch_take_a_task_batch():
    meta = tfmeta.Reptile(mlp([2, 4, 1]), inner_steps=2)
    meta.compile(optimizer="sgd", loss="mse")
    batch = task_batch()
    logs = meta.train_on_batch(batch, return_dict=True)
    assert np.isfinite(logs["loss"])
    assert np.isfinite(meta.test_on_batch(batch, return_dict=True)["loss"])
