"""Argument checks shared by the library: one validator per kind of value.

Each raises ``ValueError`` with a message that names the argument and the
value it got.
"""

import numbers

import numpy as np


def positive_int(name, value, allow_none=False):
    """``value`` as a Python int >= 1 (``None`` passes with ``allow_none``).

    Booleans and non-integral numbers (2.7) are refused.

    Args:
      name: the argument's name, for the message.
      value: the value to check.
      allow_none: let ``None`` through (default ``False``).
    """
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
            or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    return int(value)


def positive_number(name, value):
    """``value`` as a finite Python float > 0 (booleans refused).

    Args:
      name: the argument's name, for the message.
      value: the value to check.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


def outer_learning_rate(meta, optimizer):
    """Refuses an outer optimizer (as ``compile`` takes it: a Keras optimizer
    or its name) whose learning rate (a schedule's initial value) is
    negative, zero or not finite: a negative one climbs the loss. Checked
    before anything is compiled.

    Zero is allowed for ``Scratch``, which makes no outer step.

    Args:
      meta: the meta-learner being compiled.
      optimizer: the outer optimizer or its name.
    """
    import keras

    optimizer = keras.optimizers.get(optimizer)
    rate = getattr(optimizer, "_learning_rate", None)
    what = "learning_rate"
    if isinstance(rate, keras.optimizers.schedules.LearningRateSchedule):
        rate, what = rate(0), "learning_rate schedule's initial value"
    else:
        rate = optimizer.learning_rate
    value = float(keras.ops.convert_to_numpy(rate))
    from tfmeta.scratch import Scratch
    if not np.isfinite(value) or value < 0 or (
            value == 0 and not isinstance(meta, Scratch)):
        raise ValueError(
            f"the outer optimizer's {what} must be positive, got {value} "
            f"({type(optimizer).__name__}); a negative one climbs the loss.")


def retrace_on_new_ranks(meta, attribute, tensors):
    """Drops the compiled function ``meta.<attribute>`` when ``tensors`` (a
    nest: tuple, dict) have
    other ranks than in its last call (targets ``[N, 1]`` then ``[N]``):
    ``reduce_retracing`` would otherwise relax the traced shapes to unknown
    ranks, which the loss cannot take. Both shapes are then accepted, each
    with its own trace, as in a first call.

    Args:
      meta: the meta-learner holding the compiled function.
      attribute: the attribute's name, e.g. ``"_adapt_function"``.
      tensors: the call's inputs, a nest of tensors or arrays.
    """
    import tensorflow as tf

    ranks = tuple(len(np.shape(t)) for t in tf.nest.flatten(tensors))
    seen = meta.__dict__.setdefault("_tfmeta_traced_ranks", {})
    if seen.get(attribute, ranks) != ranks:
        setattr(meta, attribute, None)
    seen[attribute] = ranks


def finite_task_losses(losses):
    """``losses`` of ``evaluate_tasks``; warns naming the tasks whose loss
    before or after adaptation is NaN or infinite.

    Args:
      losses: ``{"loss_before": [B], "loss_after": [B]}`` NumPy arrays.
    """
    import warnings

    bad = sorted({int(i) for v in losses.values()
                  for i in np.flatnonzero(~np.isfinite(v))})
    if bad:
        warnings.warn(
            f"evaluate_tasks: task(s) {bad} have a non-finite (NaN/inf) query "
            "loss before or after adaptation; check their data for NaN/inf or "
            "lower the inner learning rate. Their losses are NaN/inf in the "
            "result.", RuntimeWarning, stacklevel=3)
    return losses
