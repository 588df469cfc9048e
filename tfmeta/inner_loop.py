"""The one compiled inner loop that every meta-learner adapts tasks with.

All ``K`` steps of task adaptation run inside a single ``tf.while_loop`` on
parameter tensors (``keras.Model.stateless_call``), so a whole task's training
is one graph: no Python loop per step, XLA-compilable, and differentiable end
to end (second-order MAML differentiates straight through it).

Methods differ only in what they accumulate along the path: ``hook`` is called
once per step ``i`` with ``(theta_i, theta_{i+1}, f(theta_i), f(theta_{i+1}),
grad f(theta_i))`` and threads its own state, which is how Leap computes its
pull-forward meta-gradient on the fly (Leap eq. 8). Losses are the ones the
training process computes anyway: ``f(theta_i)`` is evaluated on minibatch
``i``, so ``f(theta_{i+1})`` comes from minibatch ``i+1``; after the last
update one forward pass gives ``f(theta_K)``.
"""

import collections

import tensorflow as tf

AdaptResult = collections.namedtuple(
    "AdaptResult", ["params", "nontrainable", "loss_before", "loss_after",
                    "hook_state"])


def task_loss(model, loss_fn, params, nontrainable, x, y, training=True):
    """Mean task loss (plus the model's own regularization losses).

    Returns ``(loss, predictions, new_nontrainable)``.
    """
    pred, nontrainable, reg = model.stateless_call(
        params, nontrainable, x, training=training, return_losses=True)
    loss = tf.reduce_mean(loss_fn(y, pred))
    if loss.dtype in (tf.float16, tf.bfloat16):
        loss = tf.cast(loss, tf.float32)
    if reg:
        loss += tf.add_n([tf.cast(r, loss.dtype) for r in reg])
    return loss, pred, nontrainable


def loss_and_grads(model, loss_fn, params, nontrainable, x, y, mask=None):
    """Task loss at ``params`` on ``(x, y)`` and its gradient.

    With ``mask`` (one bool per parameter) only the masked-in parameters are
    differentiated; the others get zero gradients.
    """
    mask = [True] * len(params) if mask is None else mask
    watched = [p for p, m in zip(params, mask) if m]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        loss, _, nontrainable = task_loss(
            model, loss_fn, params, nontrainable, x, y)
    it = iter(tape.gradient(loss, watched))
    grads = []
    for p, m in zip(params, mask):
        g = next(it) if m else None
        grads.append(tf.zeros_like(p) if g is None else g)
    return loss, grads, nontrainable


def _mix(x):
    """A 32-bit integer hash (lowbias32): element-wise ops only."""
    for shift, factor in ((16, 0x7FEB352D), (15, 0x846CA68B)):
        x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, shift))
        x = x * tf.constant(factor, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _step_keys(seed, step):
    """The uint32 key of minibatch ``step`` (a scalar, or a vector of steps
    giving one key each): a pure function of ``(seed, step)``.

    Counter-based integer hashing instead of ``tf.random.stateless_*``: the
    latter cannot be vectorized with a different seed per task, which would
    stop ``vectorize_tasks`` from batching the inner loop.
    """
    seed = tf.cast(seed, tf.uint32)
    key = _mix(tf.cast(step, tf.uint32) + tf.constant(0x9E3779B9, tf.uint32))
    return _mix(tf.bitwise.bitwise_xor(seed[0], _mix(
        tf.bitwise.bitwise_xor(seed[1], key))))


def _order(key, n):
    """A pseudo-random permutation of ``range(n)`` from a step key (a scalar
    key gives ``[n]``, a vector of keys ``[len(key), n]``, row by row the
    same permutations)."""
    key = tf.expand_dims(key, -1)
    keys = _mix(tf.bitwise.bitwise_xor(tf.cast(tf.range(n), tf.uint32), key))
    # argsort takes signed keys: drop the top bit to keep the order exact.
    return tf.argsort(tf.cast(tf.bitwise.right_shift(keys, 1), tf.int32),
                      axis=-1)


def minibatch(x, y, batch_size, seed, step):
    """Minibatch ``step`` of the support split, drawn without replacement.

    ``batch_size=None`` uses the whole split every step. Draws are stateless:
    a function of ``(seed, step)`` only.
    """
    if batch_size is None:
        return x, y
    index = _order(_step_keys(seed, step), tf.shape(x)[0])[:batch_size]
    return tf.gather(x, index), tf.gather(y, index)


# Precompute every step's minibatch indices before the loop when the
# [steps + 1, n] key matrix has at most this many entries (16 MiB of keys).
PRECOMPUTE_LIMIT = 1 << 22


def minibatches(x, y, batch_size, seed, steps):
    """``batch(i)`` for ``i = 0 .. steps``: the same draws as
    ``minibatch(x, y, batch_size, seed, i)``, with the work that does not
    depend on ``i``'s data hoisted out of the inner loop: the indices of all
    draws are computed at once before the loop when the support size and
    ``steps`` are static and small enough (``PRECOMPUTE_LIMIT``), otherwise
    the per-step keys. On the sine MLP this halves the ops of a task step
    (93 -> 43) and speeds it up ~1.2x (docs/performance.md)."""
    if batch_size is None:
        return lambda i: (x, y)
    n = x.shape[0]
    k = tf.get_static_value(steps)
    draws = tf.range(steps + 1)
    if n is not None and k is not None and (int(k) + 1) * n <= PRECOMPUTE_LIMIT:
        index = _order(_step_keys(seed, draws), n)[:, :batch_size]
        return lambda i: (tf.gather(x, index[i]), tf.gather(y, index[i]))
    keys = _step_keys(seed, draws)

    def batch(i):
        index = _order(keys[i], tf.shape(x)[0])[:batch_size]
        return tf.gather(x, index), tf.gather(y, index)

    return batch


def adapt(model, loss_fn, optimizer, params, nontrainable, x, y, steps,
          batch_size=None, seed=None, hook=None, hook_state=(), mask=None):
    """Run ``steps`` updates of ``optimizer`` on task data ``(x, y)``.

    Args:
      model: a built Keras model (its variables are not touched).
      loss_fn: ``loss_fn(y_true, y_pred)``, e.g. ``keras.losses.get("mse")``.
      optimizer: a ``tfmeta.inner_optimizers.InnerOptimizer``.
      params, nontrainable: lists of tensors in the order of
        ``model.trainable_variables`` / ``model.non_trainable_variables``.
      steps: number of updates ``K >= 1`` (Python int or scalar tensor).
      batch_size: minibatch size, or ``None`` for full-batch steps.
      seed: int tensor of shape ``[2]`` for minibatch draws.
      hook: ``hook(state, i, theta_i, theta_next, loss_i, loss_next, grad_i)
        -> state``, called for every step.
      mask: one bool per parameter; ``False`` parameters are held fixed
        during adaptation (e.g. WarpGrad's warp layers). Default: all adapt.

    Returns:
      ``AdaptResult(params, nontrainable, loss_before, loss_after, hook_state)``
      with ``loss_before = f(theta_0)`` and ``loss_after = f(theta_K)``.
    """
    if seed is None:
        seed = tf.constant([0, 0], tf.int64)
    if hook is None:
        hook = lambda state, *args: state  # noqa: E731
    params = list(params)
    mask = [True] * len(params) if mask is None else list(mask)
    if len(mask) != len(params):
        raise ValueError(f"mask has {len(mask)} entries for {len(params)} "
                         "parameters.")
    batch = minibatches(x, y, batch_size, seed, steps)
    grad_at = lambda p, nt, i: loss_and_grads(  # noqa: E731
        model, loss_fn, p, nt, *batch(i), mask=mask)

    def update(i, grads, theta, opt_state):
        """The optimizer on the masked-in parameters; the rest pass through."""
        pick = lambda xs: [v for v, m in zip(xs, mask) if m]  # noqa: E731
        new, opt_state = optimizer.update(i, pick(grads), pick(theta),
                                          opt_state)
        it = iter(new)
        return [next(it) if m else t for t, m in zip(theta, mask)], opt_state

    loss0, grads0, nontrainable = grad_at(params, list(nontrainable), 0)
    opt_state = optimizer.init([p for p, m in zip(params, mask) if m])

    def body(i, theta, nt, opt_state, loss, grads, state):
        theta_next, opt_state = update(i, grads, theta, opt_state)
        loss_next, grads_next, nt = grad_at(theta_next, nt, i + 1)
        state = hook(state, i, theta, theta_next, loss, loss_next, grads)
        return i + 1, theta_next, nt, opt_state, loss_next, grads_next, state

    # Steps 0 .. K-2 in the loop; the last one is peeled off below so that
    # f(theta_K) costs a forward pass only.
    # A static bound lets XLA differentiate through the loop (second-order
    # MAML under ``jit_compile=True`` needs fixed-size gradient accumulators).
    k = tf.get_static_value(steps)
    _, theta, nt, opt_state, loss, grads, state = tf.while_loop(
        lambda i, *_: i < steps - 1, body,
        (tf.constant(0), params, nontrainable, opt_state, loss0, grads0,
         hook_state),
        maximum_iterations=None if k is None else max(int(k) - 1, 0))
    # The loop ends at i = max(steps - 1, 0), computed from ``steps`` rather
    # than taken from the loop's output: with the loop's counter feeding the
    # last step, XLA recompiled a ``vectorize_tasks`` meta-step on every call
    # (1.3 s per sine meta-step instead of ~5 ms; docs/performance.md).
    i = tf.maximum(tf.cast(steps, tf.int32) - 1, 0)
    theta_last, _ = update(i, grads, theta, opt_state)
    loss_last, _, nt = task_loss(
        model, loss_fn, theta_last, nt, *batch(i + 1), training=True)
    state = hook(state, i, theta, theta_last, loss, loss_last, grads)
    return AdaptResult(theta_last, nt, loss0, loss_last, state)
