"""Gradient encoders of meta-transfer (eqs. 4-6).

The code of a task is the gradient, with respect to a low-dimensional
variable ``z`` in ``R^k``, of the support loss of a representation learner
``f`` (an MLP, 40 hidden units in two hidden layers by default: the paper's
"3-layer MLP with 40 hidden units"), averaged over the support points. It is
computed in the graph with a ``GradientTape``, and meta-training
differentiates through it (second order) unless ``first_order=True``.

* ``ContextEncoder`` (eq. 4, CAVIA): ``f_theta(concat(x, z))``.
* ``NonlinearEncoder`` (eq. 5, LEO): ``f`` with weights ``h_phi(z)`` from a
  hypernetwork (2-layer MLP of 128 units).
* ``LinearEncoder`` (eq. 6): ``f`` with weights ``theta + V^T z`` at
  ``z = 0``, so that ``grad_z L = V grad_theta L``: the k directional
  derivatives along the rows of ``V``.

``steps > 1`` repeats CAVIA-style gradient steps ``z <- z - lr grad_z L``
(in a ``tf.while_loop``); the code is then the sum of the gradients along
the path, ``(z_0 - z_T) / lr``, which is eq. 4-6's gradient for one step.
"""

import keras
import tensorflow as tf

from tfmeta.checks import positive_int, positive_number
from tfmeta.transfer import functional as F


class GradientEncoder(keras.layers.Layer):
    """Base class: ``call(support_x, support_y) -> code [B, k]``.

    Args:
      k: dimension of ``z`` (and of the code), >= 1.
      hidden: widths of ``f``'s hidden layers (default ``(40, 40)``).
      activation: ``f``'s hidden activation (the paper does not say).
        ``tanh`` by default: with ReLU, ``f`` is piecewise linear, its
        second derivatives vanish almost everywhere and the context encoder
        barely learned on cos -> sin (query MSE 2.6 -> 1.3 over 3000
        meta-steps at sigma 0, against 0.79 -> 0.57 with tanh;
        docs/transfer.md).
      support_loss: loss of ``f`` on the support (a Keras loss name or
        function returning one value per example; default ``"mse"``).
      steps: gradient steps on ``z`` (``encoder_steps``; default 1).
      lr: step size of those steps (default 1.0; irrelevant for one step).
      first_order: stop the gradient through the encoder's gradient: the
        code is then a constant of the encoder's weights, which receive no
        meta-gradient (they keep their initialization) and no second-order
        term is computed. Default ``False``.
      seed: seed of the weight initializers (default ``None``).
      **kwargs: passed on to ``keras.layers.Layer`` (e.g. ``name``).
    """

    predicts_query = False

    def __init__(self, k, hidden=(40, 40), activation="tanh",
                 support_loss="mse", steps=1, lr=1.0, first_order=False,
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        self.k = positive_int("k", k)
        self.hidden = tuple(positive_int("hidden", h) for h in hidden)
        self.activation = activation
        self.support_loss_fn = F.per_example_loss(support_loss)
        self.steps = positive_int("encoder_steps", steps)
        self.lr = positive_number("encoder_lr", lr)
        self.first_order = bool(first_order)
        self.seed = seed
        self.support_dims = None

    def _init(self, i):
        return keras.initializers.GlorotUniform(
            None if self.seed is None else self.seed + i)

    def build(self, support_dims):
        """``support_dims = (ds, es)``: per-point input and target sizes."""
        ds, es = (positive_int("support dimension", d) for d in support_dims)
        self.support_dims = (ds, es)
        self.f_sizes = (self._f_input(ds),) + self.hidden + (es,)
        self.f_shapes = F.mlp_shapes(self.f_sizes)
        self._build_variables()
        self.built = True

    def _f_input(self, ds):
        return ds

    def initial_z(self, num_tasks):
        """``z_0`` of every task, ``[B, k]``."""
        return tf.zeros([num_tasks, self.k], self.compute_dtype)

    def support_loss(self, support_x, support_y, z):
        """Per-task support loss of ``f`` at ``z [B, k]``: ``[B]``."""
        pred = self._f(support_x, z)
        losses = self.support_loss_fn(support_y, pred)
        return tf.reduce_mean(losses, axis=-1)

    def _grad(self, support_x, support_y, z):
        with tf.GradientTape() as tape:
            tape.watch(z)
            # Tasks are independent: the gradient of the sum with respect
            # to z [B, k] holds every task's own gradient.
            loss = tf.reduce_sum(self.support_loss(support_x, support_y, z))
        grad = tape.gradient(loss, z)
        return tf.stop_gradient(grad) if self.first_order else grad

    def call(self, support_x, support_y):
        support_x = tf.cast(support_x, self.compute_dtype)
        support_y = tf.cast(support_y, self.compute_dtype)
        z = self.initial_z(tf.shape(support_x)[0])
        grad = self._grad(support_x, support_y, z)
        if self.steps == 1:
            return grad

        def body(i, z, code):
            g = self._grad(support_x, support_y, z)
            return i + 1, z - self.lr * g, code + g

        _, _, code = tf.while_loop(
            lambda i, *_: i < self.steps, body,
            (tf.constant(1), z - self.lr * grad, grad),
            maximum_iterations=self.steps - 1)
        return code

    def get_config(self):
        return {**super().get_config(), "k": self.k, "hidden": self.hidden,
                "activation": self.activation, "steps": self.steps,
                "lr": self.lr, "first_order": self.first_order,
                "seed": self.seed}


class ContextEncoder(GradientEncoder):
    """Eq. 4 (CAVIA): ``f_theta(concat(x, z))``, code ``grad_z L``;
    ``xi = [z_0, theta]`` (``z_0`` starts at zero and is meta-learned)."""

    def _f_input(self, ds):
        return ds + self.k

    def _build_variables(self):
        self.theta = []
        for i, shape in enumerate(self.f_shapes):
            init = self._init(i) if len(shape) == 2 else "zeros"
            self.theta.append(self.add_weight(shape=shape, initializer=init,
                                              name=f"theta_{i}"))
        self.z0 = self.add_weight(shape=(self.k,), initializer="zeros",
                                  name="z0")

    def initial_z(self, num_tasks):
        return tf.tile(tf.convert_to_tensor(self.z0)[None], [num_tasks, 1])

    def _f(self, x, z):
        n = tf.shape(x)[1]
        context = tf.tile(z[:, None, :], [1, n, 1])
        params = [tf.convert_to_tensor(v) for v in self.theta]
        return F.mlp_apply(params, tf.concat([x, context], -1), self.activation)


class NonlinearEncoder(GradientEncoder):
    """Eq. 5 (LEO): ``f`` with weights ``h_phi(z)``, ``h`` a 2-layer MLP
    (``hyper_hidden`` units, ReLU); code ``grad_z L``; ``xi = [z_0, phi]``.

    ``z_0`` starts at N(0, 1) (at zero, ReLU's zero derivative would give a
    zero code), and ``h``'s output layer starts at a Glorot-initialized
    ``f`` (its bias) with small kernel weights.

    Args:
      k: dimension of ``z``, >= 1.
      hyper_hidden: units of each of ``h``'s two layers (default 128).
      **kwargs: the ``GradientEncoder`` arguments (``hidden``,
        ``activation``, ``support_loss``, ``steps``, ``lr``,
        ``first_order``, ``seed``, ``name``).
    """

    def __init__(self, k, hyper_hidden=128, **kwargs):
        super().__init__(k, **kwargs)
        self.hyper_hidden = positive_int("hyper_hidden", hyper_hidden)

    def _build_variables(self):
        d = F.num_params(self.f_shapes)
        dtype = self.variable_dtype
        self.z0 = self.add_weight(
            shape=(self.k,), name="z0",
            initializer=keras.initializers.RandomNormal(
                0.0, 1.0, None if self.seed is None else self.seed + 100))
        self.h_kernel_1 = self.add_weight(
            shape=(self.k, self.hyper_hidden), initializer=self._init(101),
            name="h_kernel_1")
        self.h_bias_1 = self.add_weight(shape=(self.hyper_hidden,),
                                        initializer="zeros", name="h_bias_1")
        self.h_kernel_2 = self.add_weight(
            shape=(self.hyper_hidden, d), name="h_kernel_2",
            initializer=keras.initializers.VarianceScaling(
                0.01, seed=None if self.seed is None else self.seed + 102))
        flat = F.glorot_flat(self.f_sizes, self.seed, dtype)
        self.h_bias_2 = self.add_weight(
            shape=(d,), name="h_bias_2",
            initializer=keras.initializers.Constant(flat))

    def initial_z(self, num_tasks):
        return tf.tile(tf.convert_to_tensor(self.z0)[None], [num_tasks, 1])

    def hypernetwork(self, z):
        """``h_phi(z)``: ``[B, k] -> [B, d]`` flat weights of ``f``."""
        h = tf.nn.relu(tf.matmul(z, self.h_kernel_1) + self.h_bias_1)
        return tf.matmul(h, self.h_kernel_2) + self.h_bias_2

    def _f(self, x, z):
        params = F.unflatten(self.hypernetwork(z), self.f_shapes)
        return F.mlp_apply(params, x, self.activation)

    def get_config(self):
        return {**super().get_config(), "hyper_hidden": self.hyper_hidden}


class LinearEncoder(GradientEncoder):
    """Eq. 6: ``f`` with weights ``theta + V^T z`` at ``z = 0``; code
    ``grad_z L = V grad_theta L`` (k directional derivatives);
    ``xi = [V, theta]``. ``V``'s rows start Glorot-uniform."""

    def _build_variables(self):
        d = F.num_params(self.f_shapes)
        flat = F.glorot_flat(self.f_sizes, self.seed, self.variable_dtype)
        self.theta = self.add_weight(
            shape=(d,), name="theta",
            initializer=keras.initializers.Constant(flat))
        self.V = self.add_weight(shape=(self.k, d), initializer=self._init(200),
                                 name="V")

    def _f(self, x, z):
        flat = self.theta + tf.matmul(z, self.V)   # [B, d]
        return F.mlp_apply(F.unflatten(flat, self.f_shapes), x, self.activation)
