"""Multi-headed learners: a shared encoder whose initialization is
meta-learned and a final linear head per task, freshly initialized every
time a task is adapted and never meta-learned (Leap appendix G: "on each
task, the final linear layer is always randomly initialized"; appendix H:
Leap "is applied with respect to the convolutional encoder").

``MetaLearner(..., multi_head=True)`` turns this on for any method: the
learner's last layer must be a ``keras.layers.Dense`` (the head); its kernel
and bias are left out of ``meta_variables``, every adaptation starts from
``fresh_head`` (``MetaLearner.task_start``), and the default ``meta_step``
drops their entries from each task's meta-gradient (``without``). Tasks of
one task batch share the head's width (labels index into it); tasks with
their own widths use one learner per width around the same encoder.
"""

import keras
import tensorflow as tf


def head_indices(learner):
    """Positions of the head's kernel and bias in
    ``learner.trainable_variables`` (the last layer, a ``Dense``)."""
    layers = getattr(learner, "layers", None)
    head = layers[-1] if layers else None
    if not isinstance(head, keras.layers.Dense):
        raise ValueError(
            "multi_head=True needs a learner whose last layer is a Dense "
            f"output layer (the per-task head); got {type(head).__name__}.")
    ids = [id(v) for v in head.trainable_variables]
    index = tuple(i for i, v in enumerate(learner.trainable_variables)
                  if id(v) in ids)
    if len(index) != len(ids) or not index:
        raise ValueError("the learner's Dense head has no trainable "
                         "variables to re-initialize per task.")
    return index


def without(values, index):
    """``values`` (one per learner trainable variable, then any extra ones)
    without the entries at ``index``: a meta-gradient aligned with
    ``meta_variables``."""
    skip = set(index)
    return [v for i, v in enumerate(values) if i not in skip]


def fresh_head(params, index, seed):
    """``params`` with the head's entries (``index``: kernel ``[d, k]``, then
    bias if any) drawn afresh: Glorot-uniform kernel (Keras ``Dense``'s
    default) and zero bias, a stateless function of ``seed`` (``[2]``
    ints), so a head never carries over between tasks or adaptations."""
    params = list(params)
    seed = tf.constant([0, 0], tf.int64) if seed is None else seed
    seed = tf.random.experimental.stateless_fold_in(
        tf.cast(seed, tf.int64), 0x4EAD)
    for i in index:
        p = params[i]
        if p.shape.rank == 2:
            fan_in, fan_out = p.shape[0], p.shape[1]
            limit = (6.0 / (fan_in + fan_out)) ** 0.5
            params[i] = tf.random.stateless_uniform(
                tf.shape(p), seed, -limit, limit, dtype=p.dtype)
        else:
            params[i] = tf.zeros_like(p)
    return params
