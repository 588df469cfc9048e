"""WarpGrad's meta-learned task learning rate alpha (appendix F, table 3
"learned alpha"; ``WarpGrad(learn_task_lr=True)``)."""

import keras
import tensorflow as tf

from tfmeta import inner_optimizers


def check(meta):
    """Refuses what alpha cannot be learned with (named in the message)."""
    if not meta.task_lr_learning_rate > 0 or not meta.task_lr_clip > 0:
        raise ValueError(
            "task_lr_learning_rate and task_lr_clip must be positive, got "
            f"{meta.task_lr_learning_rate!r} and {meta.task_lr_clip!r}.")
    sgd = meta.inner_update
    if not isinstance(sgd, inner_optimizers.SGD):
        raise ValueError(
            "learn_task_lr=True meta-learns the step size of a Keras SGD "
            "inner optimizer (plain, momentum or Nesterov); got "
            f"{type(sgd).__name__}.")
    if callable(sgd.learning_rate):
        raise ValueError(
            "learn_task_lr=True needs a constant inner learning rate (the "
            "initial value of alpha), not a learning-rate schedule.")
    if meta.objective == "approximate":
        raise ValueError(
            "learn_task_lr=True needs objective='full' (eq. 11): eq. 12 "
            "stops the gradient through the task step theta_k - alpha "
            "grad L_task, so alpha would get no meta-gradient.")
    if meta.meta_training == "continual":
        raise ValueError(
            "learn_task_lr=True supports meta_training='online' or "
            "'offline', not 'continual'.")


def create(meta):
    """The variable ``task_lr`` (a weight of ``meta``), initialized at the
    inner SGD's learning rate, and the inner update that reads it (every
    task step: fit, adapt, evaluate, export)."""
    check(meta)
    sgd = meta.inner_update
    dtype = meta.learner.trainable_variables[0].dtype
    variable = meta.add_weight(
        shape=(), dtype=dtype, trainable=False, name="task_lr",
        initializer=keras.initializers.Constant(sgd.learning_rate),
        aggregation="only_first_replica")
    return variable, sgd.with_learning_rate(lambda step: variable)


def apply(meta, g):
    """alpha's own SGD step on its (clipped) meta-gradient ``g`` (under
    ``tf.distribute`` already all-reduced: the same on every replica)."""
    alpha = meta.task_lr
    g = tf.clip_by_value(tf.cast(g, alpha.dtype), -meta.task_lr_clip,
                         meta.task_lr_clip)
    alpha.assign(alpha - meta.task_lr_learning_rate * g)


class Value(keras.metrics.Metric):
    """The History's ``task_lr``: the value of alpha (not an average). A
    metric, so that ``fit`` under ``tf.distribute`` reads it as the other
    metrics (not as a mean of the replicas' logs)."""

    def __init__(self, variable, name="task_lr"):
        super().__init__(name=name)
        self._read = lambda: variable  # not tracked: a weight of the model

    def update_state(self, *args, **kwargs):
        pass

    def reset_state(self):
        pass

    def result(self):
        return tf.cast(tf.identity(self._read()), tf.float32)

