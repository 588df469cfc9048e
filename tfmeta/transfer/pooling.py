"""Set-encoder baselines of meta-transfer (section 5.1, appendix A.1).

Each point ``(x_i, y_i)`` of the support is encoded by ``h``, an MLP with
three hidden layers of 128 units (ReLU) and an output layer of size ``k``
(eq. 3), then aggregated:

* ``mean`` (DeepSets) and ``max`` (PointNet) pooling over the points;
* ``transformer``: query, key and value linear layers on the encodings,
  ``softmax(Q K^T) V`` (unscaled, as the appendix writes it), then the mean
  over the points.

All three are invariant to the order of the support points.
"""

import keras
import tensorflow as tf

from tfmeta.checks import positive_int


def point_mlp(hidden, out, depth, seed, name):
    """Per-point MLP: ``depth`` ReLU layers of ``hidden``, then ``out``."""
    init = lambda i: keras.initializers.GlorotUniform(  # noqa: E731
        None if seed is None else seed + i)
    layers = [keras.layers.Dense(hidden, activation="relu",
                                 kernel_initializer=init(i))
              for i in range(depth)]
    layers.append(keras.layers.Dense(out, kernel_initializer=init(depth)))
    return keras.Sequential(layers, name=name)


class PoolingEncoder(keras.layers.Layer):
    """``z = pool_i h(x_i, y_i)`` with ``pool`` = ``"mean"`` or ``"max"``.

    Args:
      k: size of the code ``z``, >= 1.
      pool: ``"mean"`` (DeepSets; default) or ``"max"`` (PointNet).
      hidden: width of ``h``'s hidden layers (default 128).
      depth: hidden ReLU layers of ``h`` (default 3), then a linear one.
      seed: seed of the weight initializers (default ``None``).
      **kwargs: passed on to ``keras.layers.Layer`` (e.g. ``name``).
    """

    predicts_query = False
    first_order = False
    steps = 1

    def __init__(self, k, pool="mean", hidden=128, depth=3, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        if pool not in ("mean", "max"):
            raise ValueError(f"pool must be 'mean' or 'max', got {pool!r}.")
        self.k = positive_int("k", k)
        self.pool = pool
        self.hidden = positive_int("hidden", hidden)
        self.depth = positive_int("depth", depth)
        self.seed = seed
        self.h = point_mlp(self.hidden, self.k, self.depth, seed, "h")
        self.support_dims = None

    def build(self, support_dims):
        ds, es = (positive_int("support dimension", d) for d in support_dims)
        self.support_dims = (ds, es)
        self.h.build((None, None, ds + es))
        self.built = True

    def encode_points(self, support_x, support_y):
        points = tf.concat([tf.cast(support_x, self.compute_dtype),
                            tf.cast(support_y, self.compute_dtype)], -1)
        return self.h(points)

    def call(self, support_x, support_y):
        e = self.encode_points(support_x, support_y)
        if self.pool == "mean":
            return tf.reduce_mean(e, axis=1)
        return tf.reduce_max(e, axis=1)

    def get_config(self):
        return {**super().get_config(), "k": self.k, "pool": self.pool,
                "hidden": self.hidden, "depth": self.depth, "seed": self.seed}


class TransformerEncoder(PoolingEncoder):
    """``z = mean_i [softmax(Q K^T) V]_i`` over the encodings ``h(x_i, y_i)``.

    Args:
      k: size of the code ``z``, >= 1.
      hidden: width of ``h``'s hidden layers (default 128).
      depth: hidden ReLU layers of ``h`` (default 3), then a linear one.
      seed: seed of the weight initializers (default ``None``).
      **kwargs: passed on to ``keras.layers.Layer`` (e.g. ``name``).
    """

    def __init__(self, k, hidden=128, depth=3, seed=None, **kwargs):
        super().__init__(k, pool="mean", hidden=hidden, depth=depth, seed=seed,
                         **kwargs)
        init = lambda i: keras.initializers.GlorotUniform(  # noqa: E731
            None if seed is None else seed + 10 + i)
        self.query = keras.layers.Dense(self.k, kernel_initializer=init(0),
                                        name="query")
        self.key = keras.layers.Dense(self.k, kernel_initializer=init(1),
                                      name="key")
        self.value = keras.layers.Dense(self.k, kernel_initializer=init(2),
                                        name="value")

    def build(self, support_dims):
        super().build(support_dims)
        for layer in (self.query, self.key, self.value):
            layer.build((None, None, self.k))

    def call(self, support_x, support_y):
        e = self.encode_points(support_x, support_y)
        q, key, v = self.query(e), self.key(e), self.value(e)
        weights = tf.nn.softmax(tf.matmul(q, key, transpose_b=True), axis=-1)
        return tf.reduce_mean(tf.matmul(weights, v), axis=1)

    def get_config(self):
        config = super().get_config()
        config.pop("pool")
        return config
