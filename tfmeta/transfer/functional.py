"""Flat parameter vectors and MLPs called with given weights.

The encoders' representation learner ``f`` and the query learner ``g_psi``
are run on weights that are tensors computed in the graph (a hypernetwork's
output, a decoder's output), one set per task. These helpers split a flat
parameter vector ``[B, P]`` into per-layer tensors and run an MLP on them.
"""

import keras
import numpy as np
import tensorflow as tf


def mlp_shapes(sizes):
    """Weight shapes ``[(in, out), (out,), ...]`` of a dense MLP ``sizes``."""
    shapes = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        shapes += [(fan_in, fan_out), (fan_out,)]
    return shapes


def num_params(shapes):
    return int(sum(np.prod(s) for s in shapes))


def unflatten(flat, shapes):
    """``flat [..., P]`` -> one tensor ``[..., *shape]`` per shape."""
    lead = tf.shape(flat)[:-1]
    sizes = [int(np.prod(s)) for s in shapes]
    parts = tf.split(flat, sizes, axis=-1)
    return [tf.reshape(p, tf.concat([lead, list(s)], 0))
            for p, s in zip(parts, shapes)]


def glorot_flat(sizes, seed=None, dtype="float32"):
    """Glorot-uniform kernels and zero biases of an MLP, as one vector."""
    parts = []
    for i, shape in enumerate(mlp_shapes(sizes)):
        if len(shape) == 2:
            init = keras.initializers.GlorotUniform(
                None if seed is None else seed + i)
            parts.append(np.reshape(keras.ops.convert_to_numpy(
                init(shape, dtype=dtype)), -1))
        else:
            parts.append(np.zeros(shape, dtype))
    return np.concatenate(parts).astype(dtype)


def mlp_apply(params, x, activation):
    """An MLP on ``x [B, N, in]`` with ``params = [W1, b1, W2, b2, ...]``.

    Kernels are ``[in, out]`` (shared by the tasks) or ``[B, in, out]`` (one
    per task); biases ``[out]`` or ``[B, out]``. The last layer is linear.
    """
    act = keras.activations.get(activation)
    h = x
    pairs = list(zip(params[0::2], params[1::2]))
    for i, (w, b) in enumerate(pairs):
        h = tf.matmul(h, w)
        h = h + (b[:, None, :] if b.shape.rank == 2 else b)
        if i < len(pairs) - 1:
            h = act(h)
    return h


def per_example_loss(loss):
    """A Keras loss as a function ``(y_true, y_pred) -> [B, N]``."""
    if isinstance(loss, keras.losses.Loss):
        fn = loss.call  # unreduced
    else:
        fn = keras.losses.get(loss)
    return fn


def model_params(model):
    """Shapes and flat initial values of a Keras model's trainables."""
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    flat = np.concatenate([np.reshape(keras.ops.convert_to_numpy(v), -1)
                           for v in model.trainable_variables])
    return shapes, flat


def call_with_params(model, flat, x):
    """``model`` run on each task's inputs ``x [B, M, ...]`` with that task's
    weights ``flat [B, P]`` (``stateless_call``, vectorized over tasks);
    non-trainable state (e.g. moving statistics) is the model's own."""
    shapes = [tuple(v.shape) for v in model.trainable_variables]
    nontrainable = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]

    def one(args):
        params, inputs = args
        out, _ = model.stateless_call(unflatten(params, shapes), nontrainable,
                                      inputs, training=False)
        return out

    return tf.vectorized_map(one, (flat, x))
