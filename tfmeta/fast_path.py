"""The defaults that make ``fit`` fast, chosen from the learner.

Measured on CPU (docs/performance.md): XLA (``jit_compile=True``) runs the
sine MLP's meta-steps 3-4x faster and the Omniglot conv net's 15-20x
slower; running several meta-steps per ``fit`` execution
(``steps_per_execution``) removes ``fit``'s per-step dispatch, which is a
large share of a small net's ~1 ms meta-step and nothing next to a conv
net's. So both are on by default for small dense learners only
(``small_dense``) and off otherwise, and under XLA the tasks of a
meta-batch run vectorized (``vectorize_tasks``) for the methods that
support it; an explicit ``compile(jit_compile=..., steps_per_execution=...)``
or ``vectorize_tasks=`` always wins.
"""

import math

import keras
import tensorflow as tf

#: The largest learner (trainable parameters) counted as small.
MAX_PARAMS = 1_000_000
#: The most meta-steps ``fit`` runs per execution by default.
MAX_STEPS_PER_EXECUTION = 32

# Layers whose XLA kernels on CPU are plain dense algebra (no convolution,
# pooling or recurrence); wrappers of layers are looked into.
_DENSE = (keras.layers.Dense, keras.layers.EinsumDense, keras.layers.InputLayer,
          keras.layers.Activation, keras.layers.ReLU, keras.layers.LeakyReLU,
          keras.layers.ELU, keras.layers.Softmax, keras.layers.Dropout,
          keras.layers.LayerNormalization, keras.layers.BatchNormalization,
          keras.layers.Flatten, keras.layers.Reshape, keras.layers.Identity,
          keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply,
          keras.layers.Concatenate, keras.layers.Rescaling)


def _layers(model):
    for layer in getattr(model, "layers", []):
        if isinstance(layer, keras.Model) or (
                getattr(layer, "layers", None) and not isinstance(layer, _DENSE)):
            yield from _layers(layer)
        else:
            yield layer


def small_dense(learner):
    """Whether ``learner`` is a small net of dense layers only (every layer
    one of the known dense kinds, at most ``MAX_PARAMS`` trainable
    parameters): the nets for which the fast path wins on CPU."""
    layers = list(_layers(learner))
    if not layers or not all(isinstance(layer, _DENSE) for layer in layers):
        return False
    size = sum(math.prod(v.shape) for v in learner.trainable_variables)
    return size <= MAX_PARAMS


def on_accelerator():
    return bool(tf.config.list_logical_devices("GPU")
                or tf.config.list_logical_devices("TPU"))


def jit_compile(meta):
    """The default ``jit_compile`` of meta-learner ``meta``: Keras's
    ``"auto"`` (XLA) on an accelerator, ``True`` for a small dense learner
    on CPU on one device, else ``False``; never XLA where
    ``meta.xla_unsupported()``."""
    if meta.xla_unsupported():
        return False
    if on_accelerator():
        return "auto"
    return (small_dense(meta.learner)
            and tf.distribute.get_strategy().num_replicas_in_sync == 1)


def vectorize_tasks(meta, jit=None):
    """The default ``vectorize_tasks`` of meta-learner ``meta`` (built
    with ``vectorize_tasks=None``) compiled with ``jit`` (``compile``'s
    ``jit_compile``; ``None``: chosen by ``jit_compile(meta)``): ``True``
    when the meta-step will run under XLA on CPU for a small dense learner,
    the method's own class opts
    in (``auto_vectorize = True`` in its class body: Reptile, FOMAML, MAML,
    Leap; a subclass opts in again, since per-task state of its own may not
    vectorize), the tasks run one at a time otherwise (``parallel_tasks``
    1, no ``carry_inner_state``, no ``multi_head``: a fresh head's random
    draw per task does not vectorize) and the vectorized meta-step can be
    compiled by XLA. XLA's batched matmuls cost ~1 µs per task where
    TensorFlow's kernels cost tens of microseconds per call, so under XLA
    the sine MLP's meta-steps (10 tasks) ran 1.6-1.8x faster vectorized
    than one task after another (medians of 5 runs on a loaded 2-core
    machine; single runs 0.9-2.3x), while without XLA vectorizing pays
    only from ~10 tasks on (docs/performance.md); the meta-gradient is the
    same.

    Args:
      meta: a ``tfmeta.MetaLearner``.
      jit: ``compile``'s ``jit_compile`` (default ``None``: chosen).
    """
    if (jit not in (None, True) or on_accelerator()
            or not vars(type(meta)).get("auto_vectorize", False)
            or meta.parallel_tasks > 1 or meta.carry_inner_state
            or meta.multi_head
            or tf.distribute.get_strategy().num_replicas_in_sync > 1
            or not small_dense(meta.learner)):
        return False
    given = meta.vectorize_tasks
    meta.vectorize_tasks = True
    try:
        return (meta.xla_unsupported() is None
                and (jit is True or bool(jit_compile(meta))))
    finally:
        meta.vectorize_tasks = given


def _per_epoch(callback):
    """Whether ``callback`` acts at epoch ends only (so that running several
    meta-steps per execution, with batch hooks called once per execution,
    changes nothing it does)."""
    cbs = keras.callbacks
    if isinstance(callback, (cbs.History, cbs.ProgbarLogger)):
        return True
    if isinstance(callback, (cbs.BackupAndRestore, cbs.ModelCheckpoint)):
        return getattr(callback, "save_freq", None) == "epoch"
    if isinstance(callback, cbs.TensorBoard):
        return getattr(callback, "update_freq", None) == "epoch"
    hooks = ("on_batch_begin", "on_batch_end", "on_train_batch_begin",
             "on_train_batch_end", "on_test_batch_begin", "on_test_batch_end")
    return all(getattr(getattr(callback, h), "__func__", None)
               is getattr(cbs.Callback, h) for h in hooks)


def _steps(data, steps):
    """Steps of an epoch over ``data``: ``steps`` if given, else a
    ``tf.data.Dataset``'s known finite cardinality, else ``None``."""
    if steps is not None:
        return int(steps)
    if isinstance(data, tf.data.Dataset):
        n = int(data.cardinality())
        return n if n > 0 else None
    return None


def steps_per_execution(meta, x, steps_per_epoch=None, validation_data=None,
                        validation_steps=None, callbacks=()):
    """Meta-steps per execution for one ``fit``: the largest divisor of
    the epoch's steps (and of the validation steps) up to
    ``MAX_STEPS_PER_EXECUTION``, for a small dense learner when it is safe,
    else 1. Safe: one device, not eager, the epoch's step count known
    (Keras runs whole executions, so a count it does not divide would run
    extra steps) and every callback acting per epoch only."""
    if (not small_dense(meta.learner) or meta.run_eagerly
            or meta.distribute_strategy.num_replicas_in_sync > 1
            or not all(_per_epoch(c) for c in callbacks)):
        return 1
    counts = [_steps(x, steps_per_epoch)]
    if validation_data is not None:
        counts.append(_steps(validation_data, validation_steps))
    if None in counts:
        return 1
    return max(d for d in range(1, MAX_STEPS_PER_EXECUTION + 1)
               if all(n % d == 0 for n in counts))
