"""HAT, hard attention to the task (Serra et al., 2018), in Leap's
non-sequential form (appendix G: the original formulation, revisits
allowed).

One shared encoder (4 x [3x3 conv, ReLU, gate, 2x2 max-pool]) and a linear
head per task. Task ``t`` has an embedding ``e^t_l`` per block; its gate is
``a^t_l = sigmoid(s e^t_l)`` (one per filter) multiplying the block's
output (Serra et al. eq. 1). While task ``t`` trains:

* ``s`` anneals within every epoch from ``1/s_max`` to ``s_max`` (eq. 3);
  predictions use ``s_max``;
* the loss adds ``c * sum_l sum_i a^t_{l,i} (1 - p_{l,i}) / sum_l sum_i (1 -
  p_{l,i})`` (eq. 5), ``p`` the protected units: the element-wise maximum
  of the stored gates of every *other* task trained so far (with revisits
  a task is protected from all the others, not only from earlier ones);
* the gradient of a kernel entry joining input unit ``j`` of block ``l-1``
  to output unit ``i`` of block ``l`` is multiplied by ``1 - min(p_{l,i},
  p_{l-1,j})`` (eq. 2; the first block's inputs are not gated, its factor
  is ``1 - p_{0,i}``; biases ``1 - p_{l,i}``), so the weights the other
  tasks use are left as they are (with plain SGD, exactly where the factor
  is 0);
* the embeddings' gradient is compensated for the annealing (eq. 4,
  ``thres_cosh``) and the embeddings are clipped to ``[-thres_emb,
  thres_emb]`` after each step, as the authors' code does.

``finish(t)`` stores task ``t``'s gates at ``s_max`` after its training.
The encoder has no batch normalization: shared statistics would change a
previous task's function however its weights are protected (HAT's own
networks have none).
"""

import keras
import tensorflow as tf

SMAX = 400.0
LAMBDA = 0.75
THRES_COSH = 50.0
THRES_EMB = 6.0


@keras.saving.register_keras_serializable(package="tfmeta")
class HAT(keras.Model):
    """HAT over ``len(num_classes)`` tasks (module docstring)."""

    def __init__(self, num_classes, filters=64, blocks=4, image_shape=(32, 32, 3),
                 smax=SMAX, lamb=LAMBDA, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = [int(k) for k in num_classes]
        self.filters, self.blocks = int(filters), int(blocks)
        self.image_shape = tuple(image_shape)
        self.smax, self.lamb, self.seed = float(smax), float(lamb), seed
        n = len(self.num_classes)
        init = lambda i: keras.initializers.GlorotUniform(  # noqa: E731
            None if seed is None else seed + i)
        self.convs = [keras.layers.Conv2D(filters, 3, padding="same",
                                          kernel_initializer=init(i),
                                          name=f"conv{i}")
                      for i in range(blocks)]
        self.heads = [keras.layers.Dense(k, kernel_initializer=init(50 + t),
                                         name=f"head{t}")
                      for t, k in enumerate(self.num_classes)]
        self.embeddings = [self.add_weight(
            shape=(n, filters), name=f"embedding{i}",
            initializer=keras.initializers.RandomNormal(
                0.0, 1.0, None if seed is None else seed + 90 + i))
            for i in range(blocks)]
        self.task_gates = self.add_weight(
            shape=(n, blocks, filters), initializer="zeros", trainable=False,
            name="task_gates")
        self.trained = self.add_weight(shape=(n,), initializer="zeros",
                                       trainable=False, name="trained")
        self.active = 0
        self.batches_per_epoch = 1
        for t in range(n):
            self.active = t
            self(keras.ops.zeros((1,) + self.image_shape))  # builds all heads
        self.active = 0

    def build(self, input_shape):
        pass  # the layers are built by the constructor's call

    def get_config(self):
        return dict(super().get_config(), num_classes=self.num_classes,
                    filters=self.filters, blocks=self.blocks,
                    image_shape=self.image_shape, smax=self.smax,
                    lamb=self.lamb, seed=self.seed)

    def select(self, t):
        """Task ``t`` is trained and predicted (compile after selecting)."""
        if not 0 <= t < len(self.num_classes):
            raise ValueError(f"no task {t}: this HAT has "
                             f"{len(self.num_classes)}.")
        self.active = t

    def gates(self, t, s):
        """``[a^t_l]`` at scale ``s``, one ``[filters]`` vector per block."""
        return [tf.sigmoid(s * e[t]) for e in self.embeddings]

    def forward(self, x, t, s):
        gates = self.gates(t, s)
        h = x
        for conv, a in zip(self.convs, gates):
            h = tf.nn.max_pool2d(tf.nn.relu(conv(h)) * a, 2, 2, "VALID")
        return self.heads[t](tf.reshape(h, [tf.shape(h)[0], -1])), gates

    def call(self, x, training=False):
        return self.forward(x, self.active, self.smax)[0]

    def protected(self, t):
        """``p``: ``[blocks, filters]``, the maximum of the stored gates of
        the other trained tasks (zeros if none)."""
        others = self.trained * (1.0 - tf.one_hot(t, len(self.num_classes)))
        return tf.reduce_max(self.task_gates * others[:, None, None], axis=0)

    def finish(self, t):
        """Stores task ``t``'s gates at ``s_max`` (after training it)."""
        gates = tf.stack(self.gates(t, self.smax))
        self.task_gates.assign(tf.tensor_scatter_nd_update(
            self.task_gates, [[t]], gates[None]))
        self.trained.assign(tf.tensor_scatter_nd_update(
            self.trained, [[t]], [1.0]))

    def weight_masks(self, t):
        """``{variable path: gradient factor}`` of the conv kernels and
        biases while task ``t`` trains (eq. 2)."""
        p = self.protected(t)
        out = {}
        for i, conv in enumerate(self.convs):
            post = p[i]
            factor = 1.0 - (tf.minimum(p[i - 1][:, None], post[None, :])
                            if i > 0 else post[None, :])
            out[conv.kernel.path] = tf.broadcast_to(
                factor[None, None], conv.kernel.shape)
            out[conv.bias.path] = 1.0 - post
        return out

    def train_step(self, data):
        x, y = data
        t = self.active
        b = tf.cast(self.optimizer.iterations % self.batches_per_epoch,
                    tf.float32)
        span = max(self.batches_per_epoch - 1, 1)
        s = 1.0 / self.smax + (self.smax - 1.0 / self.smax) * b / span
        p = self.protected(t)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            logits, gates = self.forward(x, t, s)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                y, logits, from_logits=True))
            free = [1.0 - p[i] for i in range(self.blocks)]
            reg = tf.add_n([tf.reduce_sum(a * f) for a, f in zip(gates, free)])
            reg = reg / tf.maximum(tf.add_n(
                [tf.reduce_sum(f) for f in free]), 1e-8)
            total = loss + self.lamb * reg
        grads = tape.gradient(total, variables)
        masks = self.weight_masks(t)
        embeds = {e.path for e in self.embeddings}
        out = []
        for g, v in zip(grads, variables):
            if g is None:   # the other tasks' heads
                g = tf.zeros(v.shape, v.dtype)
            elif v.path in masks:
                g = g * masks[v.path]
            elif v.path in embeds:
                e = tf.convert_to_tensor(v)
                num = tf.cosh(tf.clip_by_value(s * e, -THRES_COSH,
                                               THRES_COSH)) + 1.0
                den = tf.cosh(e) + 1.0
                g = g * self.smax / s * num / den
            out.append(g)
        self.optimizer.apply(out, variables)
        for e in self.embeddings:
            e.assign(tf.clip_by_value(e, -THRES_EMB, THRES_EMB))
        return {"loss": loss, "reg": reg}
