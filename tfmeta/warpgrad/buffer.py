"""Algorithm 2's replay buffer: the iterates of a batch of tasks' own
training, stored to replay warp gradients at them.

A buffer is a dict of tensors (NumPy arrays from ``WarpGrad.collect``), one
row per entry, entries task-major: ``task``, ``step`` and ``seed`` of the
entry, ``theta`` (theta_k of each task variable), ``carry`` (the momentum
term m_k, or theta_{k+1}) and ``init_grad`` (the entry's increment of the
initialization's gradient; ``[N, 0]`` without one).
"""

import tensorflow as tf

from tfmeta.meta_learner import TASK_KEYS


def from_tasks(theta, carry, init, seeds):
    """The buffer of per-task stacks ``[B, K, ...]`` (``seeds`` ``[B, 2]``).

    Args:
      theta: per task variable, the iterates theta_k ``[B, K, ...]``.
      carry: per task variable, the momentum terms m_k (or theta_{k+1})
        ``[B, K, ...]``.
      init: per meta-variable, the initialization-gradient increments
        ``[B, K, ...]`` (empty list without an initialization term).
      seeds: the tasks' minibatch seeds ``[B, 2]``.
    """
    num_tasks, steps = tf.shape(seeds)[0], tf.shape(theta[0])[1]
    flat = lambda t: tf.reshape(  # noqa: E731
        t, tf.concat([[-1], tf.shape(t)[2:]], 0))
    return {
        "task": tf.repeat(tf.range(num_tasks), steps),
        "step": tf.tile(tf.range(steps), [num_tasks]),
        "seed": tf.repeat(seeds, steps, axis=0),
        "theta": [flat(t) for t in theta],
        "carry": [flat(c) for c in carry],
        "init_grad": [flat(g) for g in init],
    }


def entry(buffer, tasks, e):
    """Entry ``e``: ``(theta_k, carry_k, step, task, seed)``.

    Args:
      buffer: a buffer (``from_tasks``).
      tasks: the task batch the buffer was collected from.
      e: the entry's index (scalar int tensor).
    """
    task = {key: tasks[key][buffer["task"][e]] for key in TASK_KEYS}
    return ([t[e] for t in buffer["theta"]], [c[e] for c in buffer["carry"]],
            buffer["step"][e], task, buffer["seed"][e])


def replay(buffer, tasks, indices, sample_gradient, like, loss_dtype):
    """Mean of ``sample_gradient(theta, carry, step, task, seed) -> (grads,
    L_meta)`` over buffer ``indices`` (one ``tf.while_loop``), the mean
    L_meta, and the sum of the entries' initialization increments.

    Args:
      buffer: a buffer (``from_tasks``).
      tasks: the task batch the buffer was collected from.
      indices: int tensor of the entries to replay.
      sample_gradient: ``fn(theta, carry, step, task, seed) -> (grads,
        L_meta)``, e.g. a wrapper of ``objective.warp_gradient``.
      like: tensors shaped as ``grads`` (zeros start the sum).
      loss_dtype: dtype of L_meta (``objective.loss_dtype``).
    """
    def body(n, acc, loss):
        g, ml = sample_gradient(*entry(buffer, tasks, indices[n]))
        return n + 1, [a + b for a, b in zip(acc, g)], loss + ml

    count = tf.shape(indices)[0]
    _, acc, loss = tf.while_loop(
        lambda n, *_: n < count, body,
        (tf.constant(0), [tf.zeros_like(p) for p in like],
         tf.zeros([], loss_dtype)))
    c = tf.cast(count, acc[0].dtype)
    init = [tf.reduce_sum(tf.gather(g, indices), 0)
            for g in buffer["init_grad"]]
    return [a / c for a in acc], loss / tf.cast(count, loss.dtype), init
