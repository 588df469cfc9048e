"""Progressive Nets (Rusu et al., 2016) in Leap's non-sequential form
(appendix G): a column per task, lateral connections from all earlier
columns, revisits allowed.

Column ``t`` is the Multi-CV encoder (4 x [3x3 conv, batch norm, ReLU, 2x2
max-pool]) with its own linear head. Its block ``l > 0`` adds to its own
convolution the lateral connections ``sum_{j<t} U^{(t:j)}_l h^{(j)}_{l-1}``
(1x1 convolutions of the earlier columns' previous block outputs) and its
head adds ``sum_{j<t} V^{(t:j)} h^{(j)}`` (linear maps of their features):
Rusu et al.'s eq. 1 with linear adapters. ``select(t)`` makes column ``t``
(its convolutions, batch norms, laterals and head) the only trainable
variables and ``call`` give its logits; earlier columns run frozen, in
inference mode, so training column ``t`` never changes them. Revisiting a
task trains its column again (the columns after it then see changed
inputs: the price of revisits; the held-out task's column comes last, with
laterals from every pretraining column).
"""

import keras
import tensorflow as tf

from tfmeta.layers import BatchNormalization


@keras.saving.register_keras_serializable(package="tfmeta")
class ProgressiveNet(keras.Model):
    """A Progressive Net with ``len(num_classes)`` columns (column ``t``
    has ``num_classes[t]`` outputs); see the module docstring."""

    def __init__(self, num_classes, filters=64, blocks=4, image_shape=(32, 32, 3),
                 seed=None, bn_momentum=0.9, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = [int(k) for k in num_classes]
        self.filters, self.blocks = int(filters), int(blocks)
        self.image_shape = tuple(image_shape)
        self.seed, self.bn_momentum = seed, bn_momentum
        init = lambda t, i: keras.initializers.GlorotUniform(  # noqa: E731
            None if seed is None else seed + 100 * t + i)
        self.convs, self.norms, self.laterals = [], [], []
        self.heads, self.head_laterals = [], []
        for t, k in enumerate(self.num_classes):
            self.convs.append([keras.layers.Conv2D(
                filters, 3, padding="same", kernel_initializer=init(t, i),
                name=f"c{t}_conv{i}") for i in range(blocks)])
            self.norms.append([BatchNormalization(
                momentum=bn_momentum, name=f"c{t}_bn{i}")
                for i in range(blocks)])
            self.laterals.append([[keras.layers.Conv2D(
                filters, 1, use_bias=False, name=f"c{t}_lat{i}_from{j}")
                for j in range(t)] for i in range(1, blocks)])
            self.heads.append(keras.layers.Dense(
                k, kernel_initializer=init(t, blocks), name=f"c{t}_head"))
            self.head_laterals.append([keras.layers.Dense(
                k, use_bias=False, name=f"c{t}_head_from{j}") for j in range(t)])
        self.active = len(self.num_classes) - 1
        self(keras.ops.zeros((1,) + self.image_shape))  # builds every column

    def build(self, input_shape):
        pass  # the layers are built by the constructor's call

    def get_config(self):
        return dict(super().get_config(), num_classes=self.num_classes,
                    filters=self.filters, blocks=self.blocks,
                    image_shape=self.image_shape, seed=self.seed,
                    bn_momentum=self.bn_momentum)

    def column_layers(self, t):
        """All layers of column ``t`` (its laterals included)."""
        return (self.convs[t] + self.norms[t]
                + [u for block in self.laterals[t] for u in block]
                + [self.heads[t]] + self.head_laterals[t])

    def select(self, t):
        """Column ``t`` is trained and predicted; all others are frozen.
        Compile after selecting (``fit_dataset`` does)."""
        if not 0 <= t < len(self.num_classes):
            raise ValueError(f"no column {t}: this net has "
                             f"{len(self.num_classes)}.")
        self.active = t
        for j in range(len(self.num_classes)):
            for layer in self.column_layers(j):
                layer.trainable = j == t

    def call(self, x, training=False):
        t = self.active
        hs = [x] * (t + 1)
        for i in range(self.blocks):
            new = []
            for j in range(t + 1):
                z = self.convs[j][i](hs[j])
                if i > 0:
                    for k, lateral in enumerate(self.laterals[j][i - 1]):
                        z = z + lateral(hs[k])
                z = self.norms[j][i](z, training=training and j == t)
                new.append(tf.nn.max_pool2d(tf.nn.relu(z), 2, 2, "VALID"))
            hs = new
        feats = [tf.reshape(h, [tf.shape(h)[0], -1]) for h in hs]
        out = self.heads[t](feats[t])
        for k, lateral in enumerate(self.head_laterals[t]):
            out = out + lateral(feats[k])
        return out
