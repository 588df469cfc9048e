"""Training a Keras model on one whole data set with the protocol of
``tfmeta.dataset_tasks``: minibatches of 32 per epoch, SGD with cosine
annealing over the epochs, the training error (on the first
``train_eval_size`` training examples) and validation error every
``eval_every`` updates, early stopping when the validation error has not
improved for ``patience`` evaluations (``dataset_tasks.stop_index``), and
the best-validation weights restored at the end."""

import collections
import math

import keras
import numpy as np
import tensorflow as tf

from tfmeta.checks import positive_int
from tfmeta.dataset_tasks import PATIENCE, stop_index

CurveRun = collections.namedtuple(
    "CurveRun", ["steps", "eval_steps", "train_errors", "val_errors", "best",
                 "stopped_early"])
CurveRun.__doc__ = """As ``tfmeta.dataset_tasks.DatasetRun`` without the
parameters (they are restored into the model)."""


def error_rate(predict, x, y, batch_size=500):
    """Classification error of ``predict(x) -> logits`` on ``(x, y)``."""
    wrong = 0
    for i in range(0, len(x), batch_size):
        logits = predict(tf.constant(x[i:i + batch_size]))
        wrong += int(np.sum(np.argmax(logits, -1) != y[i:i + batch_size]))
    return wrong / max(len(x), 1)


class _Evaluate(keras.callbacks.Callback):
    def __init__(self, predict, train, val, every, patience, total, log):
        super().__init__()
        self.predict, self.train, self.val = predict, train, val
        self.every, self.patience, self.total = every, patience, total
        self.log = log
        self.steps, self.train_errors, self.val_errors = [], [], []
        self.best, self.best_weights, self.done = None, None, 0
        self.stopped = False

    def _evaluate(self):
        self.steps.append(self.done)
        self.train_errors.append(error_rate(self.predict, *self.train))
        self.val_errors.append(error_rate(self.predict, *self.val))
        if self.best is None or self.val_errors[-1] < self.val_errors[self.best]:
            self.best = len(self.val_errors) - 1
            self.best_weights = self.model.get_weights()
        if self.log:
            self.log(f"step {self.done}/{self.total} train error "
                     f"{self.train_errors[-1]:.3f} val error "
                     f"{self.val_errors[-1]:.3f}")
        if stop_index(self.val_errors, self.patience) is not None:
            self.stopped = True
            self.model.stop_training = True

    def on_train_begin(self, logs=None):
        self._evaluate()

    def on_train_batch_end(self, batch, logs=None):
        self.done += 1
        if self.done % self.every == 0 or self.done >= self.total:
            self._evaluate()
        if self.done >= self.total:
            self.model.stop_training = True


def fit_dataset(model, data, epochs, learning_rate=0.1, batch_size=32,
                eval_every=50, patience=PATIENCE, cosine=True, seed=0,
                train_eval_size=1000, early_stopping=True, restore_best=True,
                log=None):
    """Compiles ``model`` (SGD, cosine annealing to 0 over the run; sparse
    cross-entropy on logits) and trains it on ``data`` (a
    ``tfmeta.tasks.multicv.DataSet``) for up to ``epochs`` epochs; returns
    a ``CurveRun`` (the model holds the best-validation weights with
    ``restore_best``, else the last ones). The model's ``call`` must give the logits of the task
    being trained (``ProgressiveNet.select``, ``HAT.select``)."""
    batch_size = positive_int("batch_size", batch_size)
    x, y = data.train
    per_epoch = len(x) // batch_size
    if per_epoch < 1:
        raise ValueError(f"{data.name}: {len(x)} training examples are "
                         f"fewer than one batch of {batch_size}.")
    total = int(math.ceil(epochs * per_epoch))
    rate = keras.optimizers.schedules.CosineDecay(learning_rate, total) \
        if cosine else learning_rate
    model.compile(optimizer=keras.optimizers.SGD(rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(
                      from_logits=True))
    if hasattr(model, "batches_per_epoch"):
        model.batches_per_epoch = per_epoch
    predict = tf.function(model.call, reduce_retracing=True)
    callback = _Evaluate(predict, (x[:train_eval_size], y[:train_eval_size]),
                         data.val, positive_int("eval_every", eval_every),
                         patience if early_stopping else 10 ** 9, total, log)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(
        len(x), seed=seed, reshuffle_each_iteration=True).batch(
        batch_size, drop_remainder=True)
    model.fit(dataset, epochs=int(math.ceil(total / per_epoch)),
              callbacks=[callback], verbose=0, shuffle=False)
    if restore_best:
        model.set_weights(callback.best_weights)
    return CurveRun(callback.done, callback.steps, callback.train_errors,
                    callback.val_errors, callback.best, callback.stopped)
