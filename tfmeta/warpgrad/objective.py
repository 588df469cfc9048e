"""The warp-parameter meta-gradient at one sampled iterate (WarpGrad eq.
11/12), as a pure function of tensors."""

import tensorflow as tf

from tfmeta import inner_loop, inner_optimizers

#: Fold-in key of the L_meta minibatch seeds: they differ from L_task's.
QUERY_STREAM = 1_000_003
"""Fold-in key of the L_meta minibatch seeds: they differ from L_task's."""


def loss_dtype(dtype):
    """Losses of half-precision models are float32 (``inner_loop.task_loss``).

    Args:
      dtype: the model's variable dtype (a ``tf.DType``).
    """
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def gradient_coefficient(inner_update, objective, meta_training):
    """``c`` of the inner SGD step ``theta + m - c alpha g`` (eq. 11 needs a
    step linear in the gradient): 1, or ``1 + momentum`` for Nesterov;
    ``None`` for other inner optimizers, which only eq. 12 (with the stored
    theta_{k+1}) supports.

    Args:
      inner_update: the meta-learner's ``InnerOptimizer``.
      objective: ``"full"`` or ``"approximate"``.
      meta_training: ``"online"``, ``"offline"`` or ``"continual"`` (for
        the error message).
    """
    if isinstance(inner_update, inner_optimizers.SGD):
        m = inner_update.momentum
        return 1.0 + m if inner_update.nesterov else 1.0
    name = type(inner_update).__name__
    if objective == "full":
        raise ValueError(
            "objective='full' (eq. 11) needs a Keras SGD inner optimizer "
            "(plain, momentum or Nesterov), whose step is linear in the "
            f"gradient; got {name}. Use objective='approximate' (eq. 12).")
    if meta_training == "continual":
        raise ValueError(
            "meta_training='continual' needs a Keras SGD inner optimizer "
            f"(the warped step from theta); got {name}.")
    return None


def sample_batches(task, batch_size, seed, step):
    """``(L_task batch, L_meta batch)`` of sample ``step``: support minibatch
    ``step`` (the one the task's own step ``step`` drew) and a query
    minibatch from another stream (appendix E: different batches of task
    data).

    Args:
      task: one task (dict of the task keys).
      batch_size: minibatch size, or ``None`` for whole splits.
      seed: the task's stateless ``[2]`` seed.
      step: the iterate's index k.
    """
    batch = inner_loop.minibatch(task["support_x"], task["support_y"],
                                 batch_size, seed, step)
    qseed = tf.random.experimental.stateless_fold_in(
        seed, QUERY_STREAM, alg="philox")  # as under XLA (task_seeds)
    meta_batch = inner_loop.minibatch(task["query_x"], task["query_y"],
                                      batch_size, qseed, step)
    return batch, meta_batch


def warp_gradient(objective, merge, phi, nontrainable, theta, carry, batch,
                  meta_batch, step_size=None, approximate=False):
    """``(grad_phi L_meta(theta'; phi), L_meta)`` at one iterate theta_k.

    The one warped task step (eq. 11) is ``theta' = theta_k + carry -
    step_size(phi) grad_theta L_task(theta_k; phi)`` with ``carry`` the
    stored momentum term m_k of an SGD inner optimizer (zeros for plain SGD)
    and ``step_size(phi)`` its gradient coefficient (``c alpha``; a learned
    alpha is read from ``phi``). ``approximate`` stops the gradient through
    theta' (eq. 12); ``step_size=None`` takes ``theta' = carry``, the stored
    theta_{k+1} of another inner optimizer (eq. 12 only).

    Args:
      objective: ``objective(params, nontrainable, batch) -> (loss, aux,
        nontrainable)`` (``tfmeta.inner_loop``), the task loss; L_task is it
        on ``batch``, L_meta on ``meta_batch``.
      merge: ``merge(theta, phi) -> params``, all learner parameters from
        task and warp parameters (extra entries of ``phi`` are ignored).
      phi: the warp parameters differentiated (then alpha, if learned).
      nontrainable: the learner's non-trainable state tensors.
      theta: task parameters theta_k, held constant.
      carry: the stored momentum terms m_k (zeros for plain SGD), or the
        stored theta_{k+1} when ``step_size`` is ``None``.
      batch: the L_task batch (support minibatch k).
      meta_batch: the L_meta batch (a query minibatch).
      step_size: ``step_size(phi) -> c alpha`` (default ``None``: eq. 12
        with the stored theta_{k+1}).
      approximate: stop the gradient through theta' (eq. 12; default
        ``False``).

    Returns gradients aligned with ``phi`` (zeros where unconnected).
    """
    phi = [tf.identity(p) for p in phi]
    theta = [tf.stop_gradient(t) for t in theta]
    with tf.GradientTape() as outer:
        outer.watch(phi)
        if step_size is None:  # eq. 12 with the stored theta_{k+1}
            stepped = [tf.stop_gradient(c) for c in carry]
        else:
            with tf.GradientTape() as inner:
                inner.watch(theta)
                task_loss, _, _ = objective(merge(theta, phi), nontrainable,
                                            batch)
            grads = inner.gradient(
                task_loss, theta,
                unconnected_gradients=tf.UnconnectedGradients.ZERO)
            lr = step_size(phi)
            stepped = [t + m - lr * g for t, m, g in zip(theta, carry, grads)]
            if approximate:
                stepped = [tf.stop_gradient(s) for s in stepped]
        meta_loss, _, _ = objective(merge(stepped, phi), nontrainable,
                                    meta_batch)
    grads = outer.gradient(meta_loss, phi,
                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return grads, meta_loss
