"""Keras layers for task learners."""

import keras
import numpy as np
from keras import ops

from tfmeta.checks import positive_int


@keras.saving.register_keras_serializable(package="tfmeta")
class BatchNormalization(keras.layers.BatchNormalization):
    """Batch normalization for meta-learning task learners.

    Differs from ``keras.layers.BatchNormalization`` in two ways:

    * exact higher-order gradients: on TensorFlow, Keras computes batch moments
      with ``tf.nn.moments``, which stops the gradient of the mean inside the
      variance. First derivatives are unaffected, but second derivatives
      (second-order MAML through a BN net) come out wrong. Here the variance
      is ``mean((x - mean)^2)`` with nothing stopped.
    * ``momentum=0.0`` by default: after a training-mode call the moving
      statistics are those of the last batch. Task learners adapt in training
      mode and predict in inference mode, which then uses the statistics of
      the last support minibatch (PyTorch ``momentum=1``, as in Leap's code).

    Speed: training-mode calls on 4-D channels-last float32 inputs (conv
    nets) run TensorFlow's fused kernel (``FusedBatchNormV3``), whose
    registered gradients are exact to second order as well; everything else
    takes the composite path below. ``fused=False`` forces the composite
    path.

    Args:
      momentum: weight of the old moving statistics in each update (default
        0.0: the last batch's statistics).
      fused: use the fused kernel where it applies (default ``True``).
      **kwargs: the other ``keras.layers.BatchNormalization`` arguments
        (``epsilon``, ``center``, ``scale``, ``axis``, ...).
    """

    def __init__(self, momentum=0.0, fused=True, **kwargs):
        super().__init__(momentum=momentum, **kwargs)
        self.fused = bool(fused)

    def get_config(self):
        return dict(super().get_config(), fused=self.fused)

    def _can_fuse(self, inputs, training, mask):
        return (self.fused and training and self.trainable and mask is None
                and not self.renorm and not self.synchronized
                and keras.backend.backend() == "tensorflow"
                and len(inputs.shape) == 4
                and self.axis in (3, -1) and inputs.dtype == "float32"
                and self.compute_dtype == "float32"
                # cuDNN's fused kernel refuses epsilon < 1e-5
                and self.epsilon >= 1.001e-5)

    def call(self, inputs, training=None, mask=None):
        if not self._can_fuse(inputs, training, mask):
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        channels = inputs.shape[-1]
        gamma = self.gamma if self.scale else tf.ones([channels])
        beta = self.beta if self.center else tf.zeros([channels])
        outputs, mean, variance = tf.raw_ops.FusedBatchNormV3(
            x=inputs, scale=tf.convert_to_tensor(gamma),
            offset=tf.convert_to_tensor(beta), mean=tf.zeros([0]),
            variance=tf.zeros([0]), epsilon=self.epsilon,
            exponential_avg_factor=1.0, data_format="NHWC",
            is_training=True)[:3]
        # The kernel returns the Bessel-corrected batch variance; the
        # composite path (and Keras) keep the biased one.
        n = tf.cast(tf.size(inputs) // channels, variance.dtype)
        variance = variance * tf.math.divide_no_nan(n - 1.0, n)
        self.moving_mean.assign(
            self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum
            + variance * (1.0 - self.momentum))
        return outputs

    def _moments(self, inputs, mask):
        if mask is not None:
            return super()._moments(inputs, mask)
        mean = ops.mean(inputs, axis=self._reduction_axes, keepdims=True)
        variance = ops.mean(ops.square(inputs - mean),
                            axis=self._reduction_axes)
        return ops.squeeze(mean, axis=self._reduction_axes), variance


# ------------------------------------------------------------------ WarpGrad
# Warp layers (WarpGrad, Flennerhag et al., 2020, section 2.2 and appendix A)
# are ordinary Keras layers marked by the ``WarpLayer`` base class. Their
# parameters phi are meta-learned and held fixed during task adaptation;
# ``tfmeta.warpgrad.partition(learner)`` splits a learner's variables into
# task and warp parameters by this mark. A warp layer reparameterizes an
# activation, so it must keep its input's shape, except a HyperNetwork-style
# warp (appendix A(d), Warp-RNN) that modulates the weights of task
# parameters it holds itself (``keeps_shape = False``). A warp layer may hold
# task parameters of its own (FiLM task embeddings, appendix F; Warp-RNN's
# RNN weights): it lists them in ``task_variables`` and they adapt with the
# task layers.


class WarpLayer(keras.layers.Layer):
    """Base class that marks a layer as a warp layer (meta-learned, held
    fixed during task adaptation). Subclasses keep their input's shape.

    ``task_variables`` lists the variables of this layer that are *task*
    parameters (adapted per task, from the learner's initialization), not
    warp parameters phi: e.g. ``ConvWarp(film=True)``'s FiLM task
    embeddings. Default: none. Subclasses override the property; every
    entry must be one of the layer's own trainable variables
    (``tfmeta.warpgrad.partition`` checks it).
    """

    #: False for warps that modulate weights rather than activations (the
    #: Warp-RNN HyperNetwork): their output shape is not their input's.
    keeps_shape = True

    @property
    def task_variables(self):
        return []


@keras.saving.register_keras_serializable(package="tfmeta")
class Warp(WarpLayer):
    """``tfmeta.layers.warp(layer)``: marks any Keras layer as a warp layer.

    The wrapped layer must map its input to the same shape (a warp reshapes
    the geometry, not the activation).

    Args:
      layer: the Keras layer to wrap.
      **kwargs: passed on to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    def __init__(self, layer, **kwargs):
        super().__init__(**kwargs)
        if isinstance(layer, dict):
            layer = keras.saving.deserialize_keras_object(layer)
        self.layer = layer

    def build(self, input_shape):
        self.layer.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        return self.layer(inputs, training=training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config["layer"] = keras.saving.serialize_keras_object(self.layer)
        return config


def warp(layer):
    """Marks ``layer`` as a warp layer (its parameters become warp
    parameters phi, held fixed during task adaptation).

    Args:
      layer: a shape-preserving Keras layer (a ``WarpLayer`` is returned
        as it is).
    """
    if isinstance(layer, WarpLayer):
        return layer
    return Warp(layer, name=f"warp_{layer.name}")


@keras.saving.register_keras_serializable(package="tfmeta")
class FiLM(keras.layers.Layer):
    """Feature-wise linear modulation ``h -> (1 + gamma) h + beta`` on the
    last axis (Perez et al., 2018), ``gamma = beta = 0`` at initialization
    (the identity). Inside ``ConvWarp(film=True)`` these are task
    embeddings: task parameters adapted from 0 on every task (WarpGrad,
    appendix F)."""

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="zeros",
                                     name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros",
                                    name="beta")
        self.built = True

    def call(self, inputs):
        return inputs * (1.0 + self.gamma) + self.beta

    def compute_output_shape(self, input_shape):
        return input_shape


@keras.saving.register_keras_serializable(package="tfmeta")
class ConvWarp(WarpLayer):
    """Convolutional warp layer of the Omniglot experiment (appendix E) and
    its ablations (appendix F, table 3).

    Default: a ``kernel_size x kernel_size`` (3 x 3) convolution with zero
    ("same") padding and as many filters as input channels. Flags:

    * ``kernel_size=1``: the 1 x 1 conv ablation;
    * ``scaling=True``: channel-wise scale and shift only (FiLM-like; no conv);
    * ``batch_norm=True``: batch norm after the conv (learned scale/offset
      are warp parameters);
    * ``activation="relu"``: a non-linearity after it;
    * ``residual=True``: ``x + warp(x)`` (with BN + ReLU: a residual adaptor);
    * ``stacked=2``: two stacked convolutions (the "2-layer 3 x 3 conv" rows
      of table 3): the first maps the ``C`` input channels to
      ``hidden_filters`` (default ``2 C``: 128 for the paper's 64), the
      second back to ``C``; linear in between, then BN / activation /
      residual as above. ``stacked=n`` chains ``n`` convolutions
      (``C -> hidden -> ... -> hidden -> C``).

    ``kernel_initializer`` defaults to the identity convolution (the centre
    tap is the identity matrix), so an untrained warp conv is the identity
    map and, without BN or residual, WarpGrad starts from plain SGD. With
    ``stacked=n`` the default makes the *chain* the identity: the first
    centre tap is a random ``C x hidden`` matrix ``A`` with orthonormal rows
    (Keras ``Orthogonal``, seeded by ``keras.utils.set_random_seed``), the
    middle ones the identity, the last ``A^T``, so that ``A A^T = I``; other
    taps are zero. (A deterministic ``[I 0]`` split would leave the extra
    channels at a saddle where they never receive a gradient.)

    Args:
      kernel_size: the convolution's spatial size (default 3).
      scaling: channel-wise scale and shift instead of a conv (default
        ``False``).
      batch_norm: batch norm after the conv (default ``False``).
      activation: a Keras activation after it (default ``None``).
      residual: return ``x + warp(x)`` (default ``False``).
      kernel_initializer: the conv kernels' initializer (default ``None``:
        the identity convolution, or the identity chain with ``stacked``).
      stacked: number of chained convolutions, >= 1 (default 1).
      hidden_filters: channels between stacked convs (default ``None``:
        twice the input channels).
      film: FiLM task embeddings between the stacked convs (task
        parameters; needs ``stacked >= 2``; default ``False``).
      **kwargs: passed on to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    def __init__(self, kernel_size=3, scaling=False, batch_norm=False,
                 activation=None, residual=False, kernel_initializer=None,
                 stacked=1, hidden_filters=None, film=False, **kwargs):
        super().__init__(**kwargs)
        self.kernel_size = positive_int("kernel_size", kernel_size)
        self.scaling = bool(scaling)
        self.batch_norm = bool(batch_norm)
        self.activation = keras.activations.get(activation)
        self.residual = bool(residual)
        self.kernel_initializer = kernel_initializer
        self.stacked = positive_int("stacked", stacked)
        if self.scaling and self.stacked > 1:
            raise ValueError("ConvWarp: scaling=True has no convolution to "
                             "stack; use stacked=1.")
        self.hidden_filters = positive_int("hidden_filters", hidden_filters,
                                           allow_none=True)
        self.film = bool(film)
        if self.film and self.stacked < 2:
            raise ValueError(
                "ConvWarp: film=True inserts FiLM task embeddings between "
                f"stacked convolutions; it needs stacked >= 2, got "
                f"stacked={self.stacked}.")
        self.films = []

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel axis must be known.")
        if self.scaling:
            self.scale = self.add_weight(shape=(channels,), initializer="ones",
                                         name="scale")
            self.shift = self.add_weight(shape=(channels,), initializer="zeros",
                                         name="shift")
        elif self.stacked == 1:
            init = self.kernel_initializer
            if init is None:
                init = _centre_tap_initializer(np.eye(channels))
            self.conv = keras.layers.Conv2D(
                channels, self.kernel_size, padding="same",
                kernel_initializer=init, dtype=self.dtype_policy, name="conv")
            self.conv.build(input_shape)
            self.convs = [self.conv]
        else:
            hidden = self.hidden_filters or 2 * channels
            if self.kernel_initializer is None:
                # A (C x hidden) with orthonormal rows when C <= hidden
                # (otherwise orthonormal columns: the chain is then a
                # projection, not the identity).
                a = keras.ops.convert_to_numpy(keras.initializers.Orthogonal()(
                    (channels, hidden))).astype("float64")
                taps = ([a] + [np.eye(hidden)] * (self.stacked - 2) + [a.T])
            widths = [hidden] * (self.stacked - 1) + [channels]
            self.convs, shape = [], tuple(input_shape)
            for i, width in enumerate(widths):
                init = (self.kernel_initializer if self.kernel_initializer
                        is not None else _centre_tap_initializer(taps[i]))
                conv = keras.layers.Conv2D(
                    width, self.kernel_size, padding="same",
                    kernel_initializer=init, dtype=self.dtype_policy,
                    name="conv" if i == 0 else f"conv_{i + 1}")
                conv.build(shape)
                shape = shape[:-1] + (width,)
                self.convs.append(conv)
            self.conv = self.convs[0]
            if self.film:
                self.films = []
                for i in range(self.stacked - 1):
                    film = FiLM(dtype=self.dtype_policy,
                                name="film" if i == 0 else f"film_{i + 1}")
                    film.build(tuple(input_shape)[:-1] + (hidden,))
                    self.films.append(film)
        if self.batch_norm:
            self.norm = BatchNormalization(dtype=self.dtype_policy, name="bn")
            self.norm.build(input_shape)
        self.built = True

    def call(self, inputs, training=None):
        if self.scaling:
            out = inputs * self.scale + self.shift
        else:
            out = inputs
            for i, conv in enumerate(self.convs):
                out = conv(out)
                if i < len(self.films):
                    out = self.films[i](out)
        if self.batch_norm:
            out = self.norm(out, training=training)
        if self.activation is not None:
            out = self.activation(out)
        return inputs + out if self.residual else out

    @property
    def task_variables(self):
        """The FiLM task embeddings (gamma, beta of each FiLM layer)."""
        return [v for film in self.films for v in (film.gamma, film.beta)]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            kernel_size=self.kernel_size, scaling=self.scaling,
            batch_norm=self.batch_norm,
            activation=keras.activations.serialize(self.activation)
            if self.activation is not None else None,
            residual=self.residual, stacked=self.stacked,
            hidden_filters=self.hidden_filters, film=self.film)
        return config


def _centre_tap_initializer(matrix):
    """A conv-kernel initializer: ``matrix`` (in x out) at the centre tap,
    zeros elsewhere."""
    def init(shape, dtype=None):
        kernel = np.zeros(shape)
        kernel[shape[0] // 2, shape[1] // 2] = matrix
        return ops.convert_to_tensor(kernel, dtype=dtype)
    return init


@keras.saving.register_keras_serializable(package="tfmeta")
class LinearWarp(WarpLayer):
    """Linear warp ``T x + b`` on the last axis (T-Nets-like, section 2.2:
    block-diagonal preconditioning). Initialized to the identity.

    Args:
      use_bias: learn ``b`` (default ``True``).
      kernel_initializer: initializer of ``T`` (default ``"identity"``).
      **kwargs: passed on to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    def __init__(self, use_bias=True, kernel_initializer="identity", **kwargs):
        super().__init__(**kwargs)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = kernel_initializer

    def build(self, input_shape):
        units = input_shape[-1]
        self.dense = keras.layers.Dense(
            units, use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy, name="dense")
        self.dense.build(input_shape)
        self.built = True

    def call(self, inputs):
        return self.dense(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(use_bias=self.use_bias,
                      kernel_initializer=keras.initializers.serialize(
                          keras.initializers.get(self.kernel_initializer)))
        return config


@keras.saving.register_keras_serializable(package="tfmeta")
class ResidualMLPWarp(WarpLayer):
    """Residual MLP warp ``x + MLP(x)`` (appendix J: 2 layers of 100 tanh
    units after each non-linearity; appendix D: hidden size 30, tanh).

    ``output_initializer`` defaults to zeros, so an untrained warp is the
    identity and WarpGrad starts from plain gradient descent;
    ``hidden_initializer`` (default Glorot uniform) initializes the hidden
    kernels (a seeded initializer makes the warp reproducible without
    seeding the process).

    Args:
      hidden_units: width of each hidden layer (default 100).
      num_layers: hidden layers (default 2).
      activation: their activation (default ``"tanh"``).
      output_initializer: the output kernel's initializer (default
        ``"zeros"``: identity warp).
      hidden_initializer: the hidden kernels' initializer (default
        ``"glorot_uniform"``).
      **kwargs: passed on to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    def __init__(self, hidden_units=100, num_layers=2, activation="tanh",
                 output_initializer="zeros",
                 hidden_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = positive_int("hidden_units", hidden_units)
        self.num_layers = positive_int("num_layers", num_layers)
        self.activation = activation
        self.output_initializer = output_initializer
        self.hidden_initializer = hidden_initializer

    def build(self, input_shape):
        shape = tuple(input_shape)
        self.hidden = []
        for i in range(self.num_layers - 1):
            layer = keras.layers.Dense(self.hidden_units,
                                       activation=self.activation,
                                       kernel_initializer=self._hidden_init(i),
                                       dtype=self.dtype_policy,
                                       name=f"hidden_{i}")
            layer.build(shape)
            shape = shape[:-1] + (self.hidden_units,)
            self.hidden.append(layer)
        self.out = keras.layers.Dense(
            input_shape[-1], kernel_initializer=self.output_initializer,
            dtype=self.dtype_policy, name="out")
        self.out.build(shape)
        self.built = True

    def _hidden_init(self, i):
        """Hidden layer ``i``'s kernel initializer: a seeded one gives each
        layer its own seed (``seed + i``)."""
        init = keras.initializers.get(self.hidden_initializer)
        config = init.get_config()
        if config.get("seed") is not None:
            init = init.__class__.from_config(dict(config,
                                                   seed=config["seed"] + i))
        return init

    def call(self, inputs):
        h = inputs
        for layer in self.hidden:
            h = layer(h)
        return inputs + self.out(h)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(hidden_units=self.hidden_units,
                      num_layers=self.num_layers, activation=self.activation,
                      output_initializer=keras.initializers.serialize(
                          keras.initializers.get(self.output_initializer)),
                      hidden_initializer=keras.initializers.serialize(
                          keras.initializers.get(self.hidden_initializer)))
        return config


@keras.saving.register_keras_serializable(package="tfmeta")
class WarpRNNCell(WarpLayer):
    """One step of ``WarpRNN`` (eq. 20, appendix I): a basic ``tanh`` RNN
    whose weights a meta-LSTM modulates,

        z_t, c_t = LSTM([x_t, h_{t-1}], (z_{t-1}, c_{t-1}))       (meta-LSTM)
        U_{j,t} = diag(offset + tanh(P_j z_t + p_j)),  j = 1..5
        h_t = tanh(U_{4,t} V U_{3,t} h_{t-1} + U_{2,t} W U_{1,t} x_t
                   + U_{5,t} b)

    Task parameters (adapted per task): ``W`` (``kernel``), ``V``
    (``recurrent_kernel``), ``b`` (``bias``). Warp parameters (meta-learned,
    fixed during adaptation): the meta-LSTM's weights and the projection
    ``P``, ``p`` (``modulation_kernel``, ``modulation_bias``). States:
    ``[h, z, c]``. The cell is a ``WarpLayer`` itself, so
    ``tfmeta.warpgrad.partition`` splits a model that calls it directly
    (``tfmeta.rl.nets.rnn_agent``, the maze agent) the same way.

    ``modulation_offset``: the paper writes ``U = diag(tanh(P z))``
    (``modulation_offset=0``). The default 1 with ``P = p = 0`` at
    initialization makes every ``U`` the identity, so an untrained Warp-RNN
    is the plain RNN and WarpGrad starts from plain gradient descent, like
    the library's other warps.

    Args:
      units: hidden units of the task RNN.
      meta_units: units of the meta-LSTM (default ``None``: ``units``).
      modulation_offset: the constant in ``U = diag(offset + tanh(P z + p))``
        (default 1.0: the plain RNN at initialization).
      kernel_initializer: initializer of ``W`` (default
        ``"glorot_uniform"``).
      recurrent_initializer: initializer of ``V`` (default
        ``"orthogonal"``).
      modulation_initializer: initializer of ``P`` (default ``"zeros"``).
      **kwargs: passed on to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    def __init__(self, units, meta_units=None, modulation_offset=1.0,
                 kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal",
                 modulation_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.meta_units = positive_int(
            "meta_units", self.units if meta_units is None else meta_units)
        self.modulation_offset = float(modulation_offset)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer)
        self.modulation_initializer = keras.initializers.get(
            modulation_initializer)
        self.state_size = [self.units, self.meta_units, self.meta_units]
        self.output_size = self.units

    keeps_shape = False

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self.name}: the feature axis must be known.")
        self.features = int(features)
        self.kernel = self.add_weight(
            shape=(features, self.units), initializer=self.kernel_initializer,
            name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, self.units),
            initializer=self.recurrent_initializer, name="recurrent_kernel")
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros",
                                    name="bias")
        self.meta_lstm = keras.layers.LSTMCell(
            self.meta_units, dtype=self.dtype_policy, name="meta_lstm")
        self.meta_lstm.build((input_shape[0], features + self.units))
        width = features + 4 * self.units   # U1 (x), U2, U3, U4, U5
        self.modulation_kernel = self.add_weight(
            shape=(self.meta_units, width),
            initializer=self.modulation_initializer, name="modulation_kernel")
        self.modulation_bias = self.add_weight(
            shape=(width,), initializer="zeros", name="modulation_bias")
        self.built = True

    @property
    def task_variables(self):
        return [self.kernel, self.recurrent_kernel, self.bias]

    def call(self, inputs, states, training=None):
        h, z, c = states
        _, (z, c) = self.meta_lstm(ops.concatenate([inputs, h], axis=-1),
                                   [z, c], training=training)
        u = self.modulation_offset + ops.tanh(
            ops.matmul(z, self.modulation_kernel) + self.modulation_bias)
        n = self.units
        u1, u2, u3, u4, u5 = ops.split(
            u, [self.features, self.features + n, self.features + 2 * n,
                self.features + 3 * n], axis=-1)
        h = ops.tanh(u2 * ops.matmul(u1 * inputs, self.kernel)
                     + u4 * ops.matmul(u3 * h, self.recurrent_kernel)
                     + u5 * self.bias)
        return h, [h, z, c]

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units, meta_units=self.meta_units,
            modulation_offset=self.modulation_offset,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(
                self.recurrent_initializer),
            modulation_initializer=keras.initializers.serialize(
                self.modulation_initializer))
        return config


@keras.saving.register_keras_serializable(package="tfmeta")
class TNetsRNNCell(WarpLayer):
    """The T-Nets-RNN's step (WarpGrad appendix I; T-Nets: Lee & Choi,
    2018): a basic ``tanh`` RNN with meta-learned linear projections ``T``
    after each of its task weights,

        h_t = tanh(T_h V h_{t-1} + T_x W x_t + T_b b)

    Task parameters: ``W`` (``kernel``), ``V`` (``recurrent_kernel``), ``b``
    (``bias``). Warp parameters (meta-learned the way the Warp-RNN's are,
    fixed during adaptation): the ``units x units`` matrices ``T_h``,
    ``T_x``, ``T_b`` (``t_h``, ``t_x``, ``t_b``), the identity at
    initialization, so an untrained cell is the plain RNN. The paper's
    formula writes ``+ b`` but names ``T_b`` among the projections; we
    apply it (identity at initialization). Keras's row-vector convention:
    ``h_t = tanh(h_{t-1} V T_h + x_t W T_x + b T_b)``. State: ``[h]``.

    Args:
      units: hidden units.
      kernel_initializer: initializer of ``W`` (default
        ``"glorot_uniform"``).
      recurrent_initializer: initializer of ``V`` (default
        ``"orthogonal"``).
      **kwargs: passed on to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    keeps_shape = False

    def __init__(self, units, kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal", **kwargs):
        super().__init__(**kwargs)
        self.units = positive_int("units", units)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.recurrent_initializer = keras.initializers.get(
            recurrent_initializer)
        self.state_size = [self.units]
        self.output_size = self.units

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(f"{self.name}: the feature axis must be known.")
        n = self.units
        self.kernel = self.add_weight(
            shape=(int(features), n), initializer=self.kernel_initializer,
            name="kernel")
        self.recurrent_kernel = self.add_weight(
            shape=(n, n), initializer=self.recurrent_initializer,
            name="recurrent_kernel")
        self.bias = self.add_weight(shape=(n,), initializer="zeros",
                                    name="bias")
        self.t_h, self.t_x, self.t_b = (
            self.add_weight(shape=(n, n), initializer="identity", name=name)
            for name in ("t_h", "t_x", "t_b"))
        self.built = True

    @property
    def task_variables(self):
        """The task RNN's ``W``, ``V``, ``b``."""
        return [self.kernel, self.recurrent_kernel, self.bias]

    def call(self, inputs, states, training=None):
        h = states[0]
        h = ops.tanh(
            ops.matmul(ops.matmul(h, self.recurrent_kernel), self.t_h)
            + ops.matmul(ops.matmul(inputs, self.kernel), self.t_x)
            + ops.matmul(self.bias[None], self.t_b))
        return h, [h]

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            kernel_initializer=keras.initializers.serialize(
                self.kernel_initializer),
            recurrent_initializer=keras.initializers.serialize(
                self.recurrent_initializer))
        return config


@keras.saving.register_keras_serializable(package="tfmeta")
class WarpRNN(WarpLayer):
    """Warp-RNN (WarpGrad, section 4.3 and appendix I, eq. 20): a basic
    ``tanh`` RNN (the task learner; ``kernel``, ``recurrent_kernel``,
    ``bias`` are task parameters) whose weights are modulated at every time
    step by a meta-LSTM that is a warp layer (a HyperNetwork, appendix
    A(d)): the meta-LSTM and its projection are warp parameters phi, fixed
    during task adaptation and meta-learned by ``tfmeta.WarpGrad`` (the
    paper: eq. 12, continual meta-training, Algorithm 3). See
    ``WarpRNNCell`` for the equations.

    Input ``(batch, time, features)``; output the last hidden state
    ``(batch, units)``, or every one (``return_sequences=True``). The loop
    is ``keras.layers.RNN`` (``unroll=True`` for short sequences).
    ``modulation_offset=1`` (default) starts from the plain RNN; 0 is the
    paper's literal ``U = diag(tanh(P z))``.

    Args:
      units: hidden units of the task RNN.
      meta_units: units of the meta-LSTM (default ``None``: ``units``).
      modulation_offset: the constant in ``U = diag(offset + tanh(P z + p))``
        (default 1.0: the plain RNN at initialization).
      return_sequences: output every hidden state (default ``False``: the
        last).
      unroll: unroll the time loop (default ``False``).
      kernel_initializer: initializer of ``W`` (default
        ``"glorot_uniform"``).
      recurrent_initializer: initializer of ``V`` (default
        ``"orthogonal"``).
      modulation_initializer: initializer of ``P`` (default ``"zeros"``).
      **kwargs: passed on to ``keras.layers.Layer`` (``name``, ``dtype``, ...).
    """

    keeps_shape = False

    def __init__(self, units, meta_units=None, modulation_offset=1.0,
                 return_sequences=False, unroll=False,
                 kernel_initializer="glorot_uniform",
                 recurrent_initializer="orthogonal",
                 modulation_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.cell = WarpRNNCell(
            units, meta_units=meta_units, modulation_offset=modulation_offset,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            modulation_initializer=modulation_initializer,
            dtype=self.dtype_policy, name="cell")
        self.return_sequences = bool(return_sequences)
        self.unroll = bool(unroll)
        self.rnn = keras.layers.RNN(
            self.cell, return_sequences=self.return_sequences,
            unroll=self.unroll, dtype=self.dtype_policy, name="rnn")

    def build(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.name}: WarpRNN takes (batch, time, features) inputs, "
                f"got shape {_shape(input_shape)}.")
        self.rnn.build(input_shape)
        self.built = True

    @property
    def task_variables(self):
        """The task RNN's ``W``, ``V``, ``b`` (eq. 20)."""
        return self.cell.task_variables

    def call(self, inputs, training=None, mask=None):
        return self.rnn(inputs, training=training, mask=mask)

    def compute_output_shape(self, input_shape):
        return self.rnn.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        cell = self.cell.get_config()
        config.update({k: cell[k] for k in (
            "units", "meta_units", "modulation_offset", "kernel_initializer",
            "recurrent_initializer", "modulation_initializer")})
        config.update(return_sequences=self.return_sequences,
                      unroll=self.unroll)
        return config


def _shape(shape):
    return "(" + ", ".join("?" if d is None else str(d) for d in shape) + ")"


def warped_sequential(input_shape, task_layers, warp_factory, head=None,
                      name=None):
    """A warped learner by model augmentation (appendix A(b), appendix E):
    ``head o w_L o h_L o ... o w_1 o h_1``.

    Args:
      input_shape: per-example input shape.
      task_layers: the task layers ``h_1 .. h_L`` (adapted per task).
      warp_factory: ``warp_factory(i, task_layer) -> layer or None``; a
        warp layer inserted after ``h_i`` (non-``WarpLayer`` layers are
        wrapped with ``warp``). ``None`` inserts nothing.
      head: optional final task layers (``W``), not followed by a warp
        (default ``None``).
      name: the model's name (default ``None``: Keras's).

    Raises ``ValueError`` naming the warp layer and the shapes when a warp
    layer does not keep its input's shape (it would break the task learner).
    """
    layers = []
    spec = keras.KerasTensor((None,) + tuple(input_shape))
    for i, layer in enumerate(task_layers):
        spec = layer.compute_output_spec(spec)
        layers.append(layer)
        w = warp_factory(i, layer)
        if w is None:
            continue
        w = warp(w)
        try:
            out = w.compute_output_spec(spec)
        except Exception as err:  # noqa: BLE001 - reported with context
            raise ValueError(
                f"warp layer {w.name!r} (after task layer {layer.name!r}) "
                f"cannot take inputs of shape {_shape(spec.shape)}: {err}"
            ) from err
        if w.keeps_shape and tuple(out.shape) != tuple(spec.shape):
            raise ValueError(
                f"warp layer {w.name!r} (after task layer {layer.name!r}) maps "
                f"shape {_shape(spec.shape)} to {_shape(out.shape)}; a warp "
                "layer must keep its input's shape, or it breaks the task "
                "learner.")
        layers.append(w)
    layers += list(head or [])
    return keras.Sequential([keras.Input(tuple(input_shape))] + layers,
                            name=name)
