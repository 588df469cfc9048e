"""The decoder ``M^D``: code ``z [B, k]`` -> parameters ``psi [B, P]`` of the
query learner ``g_psi`` (eq. 7; a 2-layer MLP, the same for every encoder
except the deep kernel)."""

import keras
import numpy as np
import tensorflow as tf

from tfmeta.checks import positive_int


class Decoder(keras.layers.Layer):
    """``psi = W_2 relu(W_1 z + b_1) + b_2``.

    ``b_2`` starts at ``initial_params`` (the query learner's own initial
    weights, flattened) and ``W_2`` small, so that the decoded learner
    starts near an ordinarily initialized network.

    Args:
      num_params: ``P``, the query learner's number of trainable values.
      hidden: hidden width (default 128).
      initial_params: ``[P]`` starting value of the output bias (default
        ``None``: zeros).
      seed: seed of the weight initializers (default ``None``).
      **kwargs: passed on to ``keras.layers.Layer`` (e.g. ``name``).
    """

    def __init__(self, num_params, hidden=128, initial_params=None, seed=None,
                 **kwargs):
        super().__init__(**kwargs)
        self.num_params = positive_int("num_params", num_params)
        self.hidden = positive_int("hidden", hidden)
        self.initial_params = (None if initial_params is None
                               else np.asarray(initial_params).reshape(-1))
        if self.initial_params is not None \
                and self.initial_params.size != self.num_params:
            raise ValueError(
                f"initial_params has {self.initial_params.size} values but "
                f"num_params is {self.num_params}.")
        self.seed = seed
        self.code_dim = None

    def build(self, code_dim):
        self.code_dim = positive_int("k", code_dim)
        seed = lambda i: None if self.seed is None else self.seed + i  # noqa: E731
        self.kernel_1 = self.add_weight(
            shape=(self.code_dim, self.hidden), name="kernel_1",
            initializer=keras.initializers.GlorotUniform(seed(0)))
        self.bias_1 = self.add_weight(shape=(self.hidden,), initializer="zeros",
                                      name="bias_1")
        self.kernel_2 = self.add_weight(
            shape=(self.hidden, self.num_params), name="kernel_2",
            initializer=keras.initializers.VarianceScaling(0.01, seed=seed(1)))
        init = ("zeros" if self.initial_params is None
                else keras.initializers.Constant(self.initial_params))
        self.bias_2 = self.add_weight(shape=(self.num_params,),
                                      initializer=init, name="bias_2")
        self.built = True

    def call(self, code):
        code = tf.cast(code, self.compute_dtype)
        h = tf.nn.relu(tf.matmul(code, self.kernel_1) + self.bias_1)
        return tf.matmul(h, self.kernel_2) + self.bias_2

    def get_config(self):
        return {**super().get_config(), "num_params": self.num_params,
                "hidden": self.hidden, "seed": self.seed}
