"""What task learners with batch normalization do, tested."""

import keras
import numpy as np

import tfmeta
from conftest import as_dataset, mlp, task_batch


def test_forward_matches_keras_batch_norm():
    x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
    ours = tfmeta.layers.BatchNormalization(momentum=0.9)
    theirs = keras.layers.BatchNormalization(momentum=0.9)
    for training in (True, False, True):
        np.testing.assert_allclose(ours(x, training=training),
                                   theirs(x, training=training), rtol=1e-5,
                                   atol=1e-5)
    for a, b in zip(ours.non_trainable_variables, theirs.non_trainable_variables):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


def test_adapted_statistics_are_the_last_support_batch():
    """Momentum 0: after adaptation the moving statistics are those of the
    last (here: the whole) support batch, and inference uses them."""
    keras.utils.set_random_seed(0)
    learner = keras.Sequential([keras.Input((3,)),
                                tfmeta.layers.BatchNormalization(),
                                keras.layers.Dense(1)])
    meta = tfmeta.Reptile(learner, inner_steps=4)
    meta.compile(optimizer="sgd", loss="mse")
    batch = task_batch(num_tasks=1, support=20, dim=3, seed=1)
    x = batch["support_x"][0] * 3.0 + 2.0
    adapted = meta.adapt(x, batch["support_y"][0])
    bn = adapted.layers[0]
    np.testing.assert_allclose(bn.moving_mean.numpy(), x.mean(0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), x.var(0), rtol=1e-4)


def test_meta_training_learns_scale_and_offset_not_statistics():
    meta = tfmeta.Leap(mlp([2, 6, 1], batch_norm=True),
                       inner_optimizer=keras.optimizers.SGD(0.1), inner_steps=5)
    meta.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    bn = [l for l in meta.learner.layers
          if isinstance(l, tfmeta.layers.BatchNormalization)][0]
    gamma, stats = bn.gamma.numpy(), [v.numpy() for v in bn.non_trainable_variables]
    meta.fit(as_dataset(task_batch(seed=2)).repeat(2), epochs=1, steps_per_epoch=2,
             verbose=0)
    assert np.abs(bn.gamma.numpy() - gamma).max() > 1e-6
    for before, var in zip(stats, bn.non_trainable_variables):
        np.testing.assert_array_equal(before, var.numpy())


def test_fused_conv_path_matches_composite_to_second_order():
    """4-D training-mode calls take TensorFlow's fused kernel; its output,
    batch statistics and first and second derivatives (what second-order
    MAML differentiates) equal the composite path's."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    x = tf.constant(rng.normal(size=(6, 5, 5, 4)) * 2 + 1, tf.float32)
    w = tf.constant(rng.normal(size=(6, 5, 5, 4)), tf.float32)
    layers = []
    for fused in (True, False):
        bn = tfmeta.layers.BatchNormalization(fused=fused)
        bn.build(x.shape)
        bn.gamma.assign(rng.normal(size=4) + 1)
        bn.beta.assign(rng.normal(size=4))
        layers.append(bn)
    layers[1].set_weights(layers[0].get_weights())
    assert layers[0]._can_fuse(x, True, None)
    assert not layers[1]._can_fuse(x, True, None)
    results = []
    for bn in layers:
        with tf.GradientTape() as outer:
            outer.watch(x)
            with tf.GradientTape() as inner:
                inner.watch(x)
                loss = tf.reduce_sum(tf.sin(bn(x, training=True)) * w)
            gx, gg = inner.gradient(loss, [x, bn.gamma])
            z = tf.reduce_sum(gx ** 2) + tf.reduce_sum(gg ** 2)
        gxx, ggz = outer.gradient(z, [x, bn.gamma])
        results.append([loss, gx, gg, gxx, ggz, bn.moving_mean,
                        bn.moving_variance])
    for a, b in zip(*results):
        a, b = np.asarray(a), np.asarray(b)
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4 * np.abs(b).max())
    np.testing.assert_allclose(layers[0].moving_variance.numpy(),
                               x.numpy().var(axis=(0, 1, 2)), rtol=1e-5)
    assert tfmeta.layers.BatchNormalization.from_config(
        layers[1].get_config()).fused is False
