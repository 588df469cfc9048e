"""A task's trajectory with phi fixed, sampled for warp gradients: online
(Algorithm 1, accumulated in the inner loop's hook) or recorded into
Algorithm 2's replay buffer (``tfmeta.warpgrad.buffer``)."""

import contextlib

import tensorflow as tf

from tfmeta.warpgrad import buffer as replay_buffer
from tfmeta.warpgrad.objective import loss_dtype


def run_task(meta, params, nontrainable, task, seed, record):
    """Adapts one task (phi fixed) and samples its iterates.

    ``record=False``: accumulates the warp gradient online (Algorithm 1).
    ``record=True``: writes (theta_k, carry_k) into TensorArrays
    (Algorithm 2's buffer). Returns ``(result, init_grad, path_length,
    query loss, predictions)``; the samples are in
    ``result.hook_state[0]``, the L_meta sum in ``result.hook_state[1]``.
    """
    phi = meta.outer_params(params)
    term, steps = meta.init_term, meta.inner_steps
    theta0 = meta.split(params)[0]

    def hook(state, i, theta, theta_next, loss, loss_next, grads):
        theta, theta_next, grads = (
            [tf.stop_gradient(t) for t in ts]
            for ts in (theta, theta_next, grads))
        acc, meta_loss, init_state = state
        th = meta.split(theta)[0]
        carry = meta.carry(i, theta, theta_next, grads)
        init_state = term.step(init_state, i, th,
                               meta.split(theta_next)[0], loss, loss_next,
                               meta.split(grads)[0], record)
        if record:
            acc = ([a.write(i, v) for a, v in zip(acc[0], th)],
                   [a.write(i, v) for a, v in zip(acc[1], carry)])
        else:
            g, ml = meta.warp_gradient(phi, nontrainable, th, carry, i,
                                       task, seed)
            acc = [a + b for a, b in zip(acc, g)]
            meta_loss += ml
        return acc, meta_loss, init_state

    if record:
        arrays = lambda: [tf.TensorArray(  # noqa: E731
            t.dtype, size=steps, element_shape=t.shape) for t in theta0]
        acc = (arrays(), arrays())
    else:
        acc = [tf.zeros_like(p) for p in phi]
    state = (acc, tf.zeros([], loss_dtype(params[0].dtype)),
             term.start(theta0, record, steps))
    tape = tf.GradientTape() if term.differentiates_adaptation else None
    with tape or contextlib.nullcontext():
        if tape is not None:
            tape.watch(theta0)
        result = meta.adapt_task(
            params, nontrainable, task, seed, hook=hook, hook_state=state,
            checkpoint_every=meta.checkpoint_every if tape else None)
        loss, pred = meta.query_loss(result.params, result.nontrainable,
                                     task)
    tape_grads = None
    if tape is not None:
        tape_grads = tape.gradient(
            loss, theta0, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    init_grad, length = term.gradient(result.hook_state[2], theta0, record,
                                      steps, tape_grads)
    return result, init_grad, length, loss, pred


def collect(meta, tasks, params, nontrainable):
    """The replay buffer of a task batch (``tfmeta.warpgrad.buffer``):
    every task adapted with phi fixed, its iterates theta_0..theta_{K-1}
    (and momentum terms) stored, plus per-entry initialization
    increments. Returns ``(buffer, (loss, support_loss, path_length)
    per task, predictions)``."""
    if meta.vectorize_tasks:
        raise ValueError(
            "the replay buffer (collect, offline meta-training) cannot be "
            "built with vectorize_tasks=True: its per-step records "
            "(TensorArrays) do not vectorize over tasks.")

    def one(task, seed):
        result, init, length, loss, pred = meta.run_task(
            params, nontrainable, task, seed, record=True)
        thetas, carries = result.hook_state[0]
        logs = (tf.cast(loss, tf.float32),
                tf.cast(result.loss_after, tf.float32),
                tf.cast(length, tf.float32))
        return (), ([a.stack() for a in thetas],
                    [a.stack() for a in carries], init, seed, logs, pred)

    _, (theta, carry, init, seeds, logs, preds) = meta.over_tasks(one, tasks)
    return replay_buffer.from_tasks(theta, carry, init, seeds), logs, preds
