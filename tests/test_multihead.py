"""Multi-headed learners (tfmeta.heads, MetaLearner(multi_head=True)) and
whole data sets as tasks (tfmeta.dataset_tasks)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tfmeta
from tfmeta import dataset_tasks, heads
from tfmeta.tasks import multicv

CE = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def mlp(classes=3, seed=0):
    return keras.Sequential([
        keras.Input((4,)),
        keras.layers.Dense(8, activation="tanh",
                           kernel_initializer=keras.initializers.GlorotUniform(seed)),
        keras.layers.Dense(classes, name="head")])


def tasks(num_tasks=3, n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(num_tasks, n, 4)).astype("float32")
    y = rng.integers(0, 3, (num_tasks, n)).astype("int32")
    return {"support_x": x, "support_y": y, "query_x": x, "query_y": y}


def tiny_dataset(n=64, seed=0, name="toy"):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 1), dtype=np.uint8)
    y = (x[:, :16].mean(axis=(1, 2, 3)) > x[:, 16:].mean(axis=(1, 2, 3)))
    return multicv.from_arrays(name, (x, y.astype(int)), (x[:16], y[:16].astype(int)),
                               num_classes=2, mean=(0.5,), std=(0.3,))


def test_head_is_left_out_of_meta_variables():
    learner = mlp()
    meta = tfmeta.Leap(learner, multi_head=True)
    assert meta.head_index == (2, 3)
    assert [v.path for v in meta.meta_variables] == [
        v.path for v in learner.trainable_variables[:2]]
    assert meta.get_config()["multi_head"] is True
    with pytest.raises(ValueError, match="last layer is a Dense"):
        tfmeta.Leap(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3),
                                      keras.layers.Softmax()]), multi_head=True)


def test_head_is_fresh_per_task_and_never_carries_over():
    meta = tfmeta.Reptile(mlp(), multi_head=True,
                          inner_optimizer=keras.optimizers.SGD(1e-6))
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss=CE)
    meta.learner.layers[-1].kernel.assign(tf.fill([8, 3], 100.0))
    params, nontrainable = meta.current_state()
    a = meta.task_start(params, tf.constant([1, 2], tf.int64))
    b = meta.task_start(params, tf.constant([1, 3], tf.int64))
    again = meta.task_start(params, tf.constant([1, 2], tf.int64))
    limit = (6 / (8 + 3)) ** 0.5
    assert np.abs(a[2].numpy()).max() <= limit      # not the stored 100s
    assert not np.allclose(a[2], b[2])              # another draw per seed
    np.testing.assert_array_equal(a[2], again[2])   # a function of the seed
    np.testing.assert_array_equal(a[3], 0.0)
    for i in (0, 1):                                 # the encoder as given
        np.testing.assert_array_equal(a[i], params[i])
    task = {k: v[0] for k, v in tasks().items()}
    result = meta.adapt_task(params, nontrainable, task,
                             tf.constant([1, 2], tf.int64), steps=2)
    assert np.abs(result.params[2].numpy()).max() < limit + 1e-3
    adapted = meta.adapt(task["support_x"], task["support_y"], steps=1)
    assert np.abs(adapted.layers[-1].kernel.numpy()).max() < limit + 1e-3


def test_leap_meta_gradient_touches_only_the_encoder():
    # energy metric, no loss term and no stabilizer: Leap's meta-gradient
    # is theta_0 - theta_K (Reptile's), so with outer SGD(1) the encoder
    # moves to the tasks' mean adapted encoder; the head does not move.
    meta = tfmeta.Leap(mlp(), metric="energy", loss_in_manifold=False,
                       stabilizer=False, inner_steps=3, multi_head=True,
                       inner_optimizer=keras.optimizers.SGD(0.5), seed=3)
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss=CE)
    batch = tasks()
    head_before = [v.numpy().copy() for v in meta.learner.trainable_variables[2:]]
    params, nontrainable = meta.current_state()
    state = meta.seed_generator.state.numpy().copy()
    seeds = meta.task_seeds(3)
    meta.seed_generator.state.assign(state)
    expected = [np.zeros_like(p) for p in params[:2]]
    for i in range(3):
        task = {k: tf.constant(v[i]) for k, v in batch.items()}
        result = meta.adapt_task(params, nontrainable, task, seeds[i])
        for e, p in zip(expected, result.params[:2]):
            e += p.numpy() / 3
    meta.train_on_batch(batch)
    for v, e in zip(meta.learner.trainable_variables[:2], expected):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-5, atol=1e-6)
    for v, b in zip(meta.learner.trainable_variables[2:], head_before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_stop_index_follows_the_rule():
    errs = [0.9, 0.5, 0.6, 0.5, 0.55, 0.4] + [0.45] * 10
    assert dataset_tasks.stop_index(errs, patience=10) == 15
    assert dataset_tasks.stop_index(errs[:15], patience=10) is None
    assert dataset_tasks.stop_index([0.3, 0.3, 0.3], patience=2) == 2


def small_meta(cls=tfmeta.Scratch, lr=0.05, bn_momentum=0.9, **kwargs):
    learner = multicv.learner(2, seed=0, filters=4, blocks=2,
                              bn_momentum=bn_momentum)
    meta = cls(learner, inner_optimizer=keras.optimizers.SGD(lr),
               multi_head=True, **kwargs)
    meta.compile(optimizer=keras.optimizers.Adam(0.01), loss=CE)
    return meta


def test_early_stopping_stops_where_the_rule_says():
    # nothing moves (nor the batch-norm statistics): the val error stays put
    meta = small_meta(lr=1e-12, bn_momentum=1.0)
    trainer = dataset_tasks.DatasetTrainer(meta, batch_size=8, eval_every=1,
                                           patience=3)
    run = trainer.train(tiny_dataset(), epochs=5)
    assert run.stopped_early and run.best == 0
    assert run.eval_steps == [0, 1, 2, 3] and run.steps == 3
    assert len(set(run.val_errors)) == 1
    assert dataset_tasks.stop_index(run.val_errors, 3) == 3


def test_chunks_follow_one_path_and_leap_step_keeps_the_head():
    data = tiny_dataset()
    meta = small_meta(tfmeta.Leap, metric="energy")
    hook = meta.flat_hook()
    params, nontrainable = meta.current_state()
    runs = [dataset_tasks.DatasetTrainer(meta, batch_size=8, eval_every=k)
            .train(data, 2, params, nontrainable, seed=4, hook=hook,
                   hook_state=tfmeta.leap.flat_state(params),
                   early_stopping=False)
            for k in (3, 16)]
    assert runs[0].steps == runs[1].steps == 14
    np.testing.assert_allclose(runs[0].hook_state[0][0],
                               runs[1].hook_state[0][0], rtol=1e-4, atol=1e-6)
    trainer = dataset_tasks.DatasetTrainer(meta, batch_size=8, eval_every=7)
    head = [v.numpy().copy() for v in meta.learner.trainable_variables[-2:]]
    encoder = [v.numpy().copy() for v in meta.meta_variables]
    out = dataset_tasks.leap_meta_step(
        meta, trainer, [data, tiny_dataset(seed=1, name="toy2")], epochs=1,
        hook=hook)
    assert set(out) == {"toy", "toy2"}
    for v, b in zip(meta.learner.trainable_variables[-2:], head):
        np.testing.assert_array_equal(v.numpy(), b)
    assert any(not np.allclose(v.numpy(), b)
               for v, b in zip(meta.meta_variables, encoder))
    assert 0.0 <= trainer.test_error(data, out["toy"]) <= 1.0


def test_multi_head_export_is_refused(tmp_path):
    meta = tfmeta.Reptile(mlp(), multi_head=True)
    meta.compile(optimizer=keras.optimizers.SGD(1.0), loss=CE)
    with pytest.raises(NotImplementedError, match="fresh head"):
        meta.export(tmp_path / "out")
    assert not (tmp_path / "out").exists()
