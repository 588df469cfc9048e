"""The one compiled inner loop that every meta-learner adapts tasks with.

All ``K`` steps of task adaptation run inside a single ``tf.while_loop`` on
parameter tensors (``keras.Model.stateless_call``), so a whole task's training
is one graph: no Python loop per step, XLA-compilable, and differentiable end
to end (second-order MAML differentiates straight through it).

**The objective contract.** The loop adapts parameters on an *objective*

    objective(params, nontrainable, batch) -> (loss, aux, nontrainable)

a pure function of parameter tensors (in ``model.trainable_variables``
order), non-trainable state (batch-norm statistics; returned updated) and one
batch, a nested structure of tensors (``tf.nest``). ``loss`` is a scalar,
``aux`` anything the caller wants back (predictions). ``supervised(model,
loss_fn)`` is the supervised implementation, ``batch = (x, y)``; a loss over
rollouts (RL) or support data of another shape than the query's
(meta-transfer) is another objective, and the loop does not change.
``data`` is either a nested structure whose leaves share a leading example
axis (minibatch ``i`` gathers the same rows of every leaf, ``sample``), or a
callable ``i -> batch``.

**The hook.** Methods differ only in what they accumulate along the path:
``hook`` is called once per step ``i`` with ``(theta_i, theta_{i+1},
f(theta_i), f(theta_{i+1}), grad f(theta_i))`` and threads its own state,
which is how Leap computes its pull-forward meta-gradient on the fly (Leap
eq. 8). Losses are the ones the training process computes anyway:
``f(theta_i)`` is evaluated on minibatch ``i``, so ``f(theta_{i+1})`` comes
from minibatch ``i+1``; after the last update one forward pass gives
``f(theta_K)``.

**Step by step.** ``Stepper`` is the same loop one update at a time, for
tasks whose next batch comes from outside the graph (an environment that
rolls out ``theta_{i+1}``): ``start``, then ``step`` per update with the
batch collected at ``stepper.next_params(state)``, then ``finish``. The
``tf.while_loop`` form (``optimize``) is built from the same three calls, so
both give the same path and hook state.
"""

import collections
import dataclasses
import math
from typing import Any, Optional

import tensorflow as tf

#: ``opt_state``: the inner optimizer's state after the last update (what a
#: carried inner optimizer, ``MetaLearner(carry_inner_state=True)``, keeps).
AdaptResult = collections.namedtuple(
    "AdaptResult", ["params", "nontrainable", "loss_before", "loss_after",
                    "hook_state", "opt_state"], defaults=((),))

#: The loop's state after update ``step`` (``params`` = theta_step, ``loss``
#: and ``grads`` at theta_step on minibatch ``step``).
LoopState = collections.namedtuple(
    "LoopState", ["step", "params", "nontrainable", "opt_state", "loss",
                  "grads", "hook_state", "loss_before"])


@dataclasses.dataclass(frozen=True)
class Adaptation:
    """How a meta-learner adapts a task: the one spec that ``fit``,
    ``adapt``, ``evaluate``, ``evaluate_tasks`` and ``export`` read
    (``MetaLearner.adaptation()``).

    Attributes:
      steps: updates per task during meta-training (``inner_steps``).
      eval_steps: updates in ``adapt``/``evaluate``/``export`` by default.
      optimizer: the ``InnerOptimizer`` (its learning rate may read a
        variable: a learned step size).
      mask: one bool per learner trainable variable, ``False`` = held fixed
        while a task adapts (WarpGrad's warp layers, ANIL's body); ``None``
        = all adapt.
      batch_size: support minibatch size per update (``None``: full split).
      step_size: the variable of a meta-learned scalar step size that
        ``optimizer`` reads (WarpGrad ``learn_task_lr``), else ``None``;
        ``export`` stores its value at export time.
      eval_batch_size: support minibatch size per update in ``adapt``,
        ``evaluate`` and ``export`` (``None``: full split).
      inner_state: with ``carry_inner_state``, ``(slots, updates)``: the
        variables of the carried inner optimizer state (a tuple of lists
        aligned with the learner's trainable variables) and of the number
        of inner updates it has taken; every adaptation starts from them
        (``export`` stores their values at export time). ``None``: every
        adaptation starts a fresh inner optimizer.
      sampling: how support minibatches are drawn (``SAMPLINGS``).
    """

    steps: int
    eval_steps: int
    optimizer: Any
    mask: Optional[list] = None
    batch_size: Optional[int] = None
    step_size: Any = None
    eval_batch_size: Optional[int] = None
    inner_state: Any = None
    sampling: str = "independent"


def task_loss(model, loss_fn, params, nontrainable, x, y, training=True):
    """Mean task loss (plus the model's own regularization losses).

    Args:
      model: the task learner (a Keras model; called with
        ``stateless_call``, its variables are not touched).
      loss_fn: ``loss_fn(y_true, y_pred)``, e.g. ``keras.losses.get("mse")``.
      params: list of tensors in ``model.trainable_variables`` order.
      nontrainable: list of tensors in ``model.non_trainable_variables``
        order (batch-norm statistics).
      x: inputs of a batch.
      y: its targets.
      training: training mode (default ``True``: batch statistics, and the
        non-trainable state is updated).

    Returns:
      ``(loss, predictions, new_nontrainable)``.
    """
    pred, nontrainable, reg = model.stateless_call(
        params, nontrainable, x, training=training, return_losses=True)
    if pred.dtype in (tf.float16, tf.bfloat16):  # mixed precision: the
        pred = tf.cast(pred, tf.float32)         # loss in float32
    loss = tf.reduce_mean(loss_fn(y, pred))
    if loss.dtype in (tf.float16, tf.bfloat16):
        loss = tf.cast(loss, tf.float32)
    if reg:
        loss += tf.add_n([tf.cast(r, loss.dtype) for r in reg])
    return loss, pred, nontrainable


def supervised(model, loss_fn, training=True):
    """The supervised objective: ``batch = (x, y)``, ``aux`` = predictions
    (``task_loss``).

    Args:
      model: the task learner (a Keras model; called with
        ``stateless_call``, its variables are not touched).
      loss_fn: ``loss_fn(y_true, y_pred)``, e.g. ``keras.losses.get("mse")``.
      training: training mode (default ``True``).
    """
    def objective(params, nontrainable, batch):
        x, y = batch
        return task_loss(model, loss_fn, params, nontrainable, x, y,
                         training=training)
    return objective


def value_and_grads(objective, params, nontrainable, batch, mask=None):
    """``(loss, aux, grads, nontrainable)`` of ``objective`` at ``params``.

    With ``mask`` (one bool per parameter) only the masked-in parameters are
    differentiated; the others get zero gradients, as do parameters the loss
    does not depend on.

    Args:
      objective: ``objective(params, nontrainable, batch) -> (loss, aux,
        nontrainable)`` (module docstring).
      params: list of parameter tensors.
      nontrainable: list of non-trainable state tensors.
      batch: the objective's batch (a nest of tensors).
      mask: one bool per parameter (default ``None``: all differentiated).
    """
    mask = [True] * len(params) if mask is None else mask
    watched = [p for p, m in zip(params, mask) if m]
    with tf.GradientTape() as tape:
        tape.watch(watched)
        loss, aux, nontrainable = objective(params, nontrainable, batch)
    it = iter(tape.gradient(loss, watched,
                            unconnected_gradients=tf.UnconnectedGradients.ZERO))
    grads = [next(it) if m else tf.zeros_like(p) for p, m in zip(params, mask)]
    return loss, aux, grads, nontrainable


def loss_and_grads(model, loss_fn, params, nontrainable, x, y, mask=None):
    """Supervised task loss at ``params`` on ``(x, y)`` and its gradient
    (``value_and_grads`` of ``supervised``): ``(loss, grads, nontrainable)``.

    Args:
      model: the task learner (a Keras model; called with
        ``stateless_call``, its variables are not touched).
      loss_fn: ``loss_fn(y_true, y_pred)``, e.g. ``keras.losses.get("mse")``.
      params: list of tensors in ``model.trainable_variables`` order.
      nontrainable: list of tensors in ``model.non_trainable_variables``
        order (batch-norm statistics).
      x: inputs.
      y: targets.
      mask: one bool per parameter (default ``None``: all).
    """
    loss, _, grads, nontrainable = value_and_grads(
        supervised(model, loss_fn), params, nontrainable, (x, y), mask)
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


def _gather(data, index):
    return tf.nest.map_structure(lambda t: tf.gather(t, index), data)


def _num_examples(data):
    return tf.nest.flatten(data)[0]


def sample(data, batch_size, seed, step):
    """Minibatch ``step`` of ``data`` (nested; the same rows of every leaf),
    drawn without replacement. ``batch_size=None`` uses all of it every
    step. Draws are stateless: a function of ``(seed, step)`` only.

    Args:
      data: a nest of tensors sharing a leading example axis.
      batch_size: examples per minibatch, or ``None`` for all.
      seed: int tensor of shape ``[2]``, the stateless seed of the draws.
      step: the 0-based update index.
    """
    if batch_size is None:
        return data
    first = _num_examples(data)
    index = _order(_step_keys(seed, step), tf.shape(first)[0])[:batch_size]
    return _gather(data, index)


def minibatch(x, y, batch_size, seed, step):
    """``sample((x, y), ...)``: minibatch ``step`` of a support split.

    Args:
      x: support inputs ``[N, ...]``.
      y: support targets ``[N, ...]``.
      batch_size: examples per minibatch, or ``None`` for all.
      seed: int tensor of shape ``[2]``, the stateless seed of the draws.
      step: the 0-based update index.
    """
    return tuple(sample((x, y), batch_size, seed, step))


# Precompute every step's minibatch indices before the loop when the
# [steps + 1, n] key matrix has at most this many entries (16 MiB of keys).
PRECOMPUTE_LIMIT = 1 << 22
"""Entries of the ``[steps + 1, n]`` key matrix up to which ``samplers``
precomputes every draw before the loop."""


SAMPLINGS = ("independent", "epochs")
"""How the inner loop draws support minibatches: ``"independent"`` (each
minibatch on its own, without replacement within it) or ``"epochs"``
(consecutive minibatches pass through the support split in a shuffled
order, reshuffled at every pass, as Reptile's code does)."""


def check_sampling(sampling):
    """``sampling`` if it is one of ``SAMPLINGS``, else a ``ValueError``.

    Args:
      sampling: the name to check.
    """
    if sampling not in SAMPLINGS:
        raise ValueError(f"inner sampling must be one of {SAMPLINGS}, got "
                         f"{sampling!r}.")
    return sampling


def _epoch_index(seed, draws, n, batch_size):
    """Example indices of minibatches ``draws`` (``[D]``) under ``"epochs"``
    sampling: minibatch ``i`` holds positions ``i * b .. i * b + b - 1`` of
    the concatenated passes, pass ``e`` a permutation drawn from
    ``(seed, e)``. Returns ``[D, b]``."""
    positions = (tf.cast(draws, tf.int32)[:, None] * batch_size
                 + tf.range(batch_size)[None, :])
    passes, offsets = positions // n, positions % n
    orders = _order(_step_keys(seed, passes), n)      # [D, b, n]
    return tf.gather(orders, offsets[..., None], batch_dims=2)[..., 0]


def samplers(data, batch_size, seed, steps, sampling="independent"):
    """``batch(i)`` for ``i = 0 .. steps``: the same draws as
    ``sample(data, batch_size, seed, i)`` (``sampling="independent"``, the
    default; ``"epochs"``: see ``SAMPLINGS``), with the work that does not
    depend on ``i``'s data hoisted out of the inner loop: the indices of all
    draws are computed at once before the loop when the example count and
    ``steps`` are static and small enough (``PRECOMPUTE_LIMIT``), otherwise
    the per-step keys. On the sine MLP this halves the ops of a task step
    (93 -> 43) and speeds it up ~1.2x (docs/performance.md).

    Args:
      data: a nest of tensors sharing a leading example axis.
      batch_size: examples per minibatch, or ``None`` for all.
      seed: int tensor of shape ``[2]``, the stateless seed of the draws.
      steps: the number of updates ``K`` (draws ``0 .. K``).
      sampling: one of ``SAMPLINGS`` (default ``"independent"``).
    """
    check_sampling(sampling)
    if batch_size is None:
        return lambda i: data
    first = _num_examples(data)
    n = first.shape[0]
    k = tf.get_static_value(steps)
    draws = tf.range(steps + 1)
    if sampling == "epochs":
        count = tf.shape(first)[0]
        if n is not None and k is not None \
                and (int(k) + 1) * batch_size * n <= PRECOMPUTE_LIMIT:
            index = _epoch_index(seed, draws, count, batch_size)
            return lambda i: _gather(data, index[i])
        return lambda i: _gather(data, _epoch_index(
            seed, tf.reshape(i, [1]), count, batch_size)[0])
    if n is not None and k is not None and (int(k) + 1) * n <= PRECOMPUTE_LIMIT:
        index = _order(_step_keys(seed, draws), n)[:, :batch_size]
        return lambda i: _gather(data, index[i])
    keys = _step_keys(seed, draws)

    def batch(i):
        return _gather(data, _order(keys[i], tf.shape(first)[0])[:batch_size])

    return batch


def minibatches(x, y, batch_size, seed, steps):
    """``samplers((x, y), ...)`` with tuples: the support split's draws.

    Args:
      x: support inputs ``[N, ...]``.
      y: support targets ``[N, ...]``.
      batch_size: examples per minibatch, or ``None`` for all.
      seed: int tensor of shape ``[2]``, the stateless seed of the draws.
      steps: the number of updates ``K``.
    """
    batch = samplers((x, y), batch_size, seed, steps)
    return lambda i: tuple(batch(i))


def carried_inner_state(spec):
    """``(opt_state, updates)`` to start an adaptation from: the values of
    ``spec.inner_state``'s variables (``Adaptation``), restricted to the
    parameters ``spec.mask`` lets adapt, and the inner update count.

    Args:
      spec: a ``tfmeta.inner_loop.Adaptation`` with ``inner_state``.
    """
    slots, updates = spec.inner_state
    n = len(slots[0]) if slots else 0
    mask = spec.mask or [True] * n
    opt_state = tuple([tf.convert_to_tensor(v) for v, m in zip(slot, mask) if m]
                      for slot in slots)
    return opt_state, tf.convert_to_tensor(updates)


class Stepper:
    """The inner loop one update at a time (the loop body of ``optimize``).

    ``start`` evaluates ``f(theta_0)`` and its gradient on a batch; each
    ``step`` applies update ``i`` and evaluates ``f(theta_{i+1})`` and its
    gradient on the next batch, then calls the hook for segment ``i``;
    ``finish`` applies the last update and evaluates ``f(theta_K)`` only
    (no gradient). ``next_params`` is theta_{i+1} before it is evaluated,
    for an environment that must act with it to produce the next batch.
    All are pure functions of their arguments: call them in a
    ``tf.while_loop``, a ``tf.function`` or eagerly from Python.

    Args:
      objective: ``objective(params, nontrainable, batch) -> (loss, aux,
        nontrainable)``.
      optimizer: a ``tfmeta.inner_optimizers.InnerOptimizer``.
      mask: one bool per parameter, ``False`` = held fixed (default
        ``None``: all adapt).
      hook: ``hook(state, i, theta_i, theta_next, loss_i, loss_next,
        grad_i) -> state`` (default ``None``: no hook); a hook with the
        attribute ``takes_increments = True`` also gets ``d_theta=``, the
        update's increments (``InnerOptimizer.update_with_increments``),
        and should read them instead of ``theta_i`` (Leap's
        ``flat_hook``: under XLA, a hook that reads theta_i after theta_{i+1}
        exists makes the loop copy every parameter at every step).
      step_offset: added to the update index the optimizer sees (default 0;
        ``optimize``).
    """

    def __init__(self, objective, optimizer, mask=None, hook=None,
                 step_offset=0):
        self.objective = objective
        self.optimizer = optimizer
        self.mask = None if mask is None else list(mask)
        self.hook = hook or (lambda state, *args: state)
        self.step_offset = step_offset

    def _mask(self, params):
        if self.mask is None:
            return [True] * len(params)
        if len(self.mask) != len(params):
            raise ValueError(f"mask has {len(self.mask)} entries for "
                             f"{len(params)} parameters.")
        return self.mask

    def start(self, params, nontrainable, batch, hook_state=(),
              opt_state=None):
        """The state at theta_0, before any update.

        Args:
          params: theta_0, list of tensors.
          nontrainable: the non-trainable state at the start.
          batch: the objective's batch for ``f(theta_0)``.
          hook_state: the hook's initial state (default ``()``).
          opt_state: the optimizer's state to start from (default ``None``:
            ``optimizer.init``, a fresh optimizer).
        """
        params = list(params)
        mask = self._mask(params)
        loss, _, grads, nontrainable = value_and_grads(
            self.objective, params, list(nontrainable), batch, mask)
        if opt_state is None:
            opt_state = self.optimizer.init(
                [p for p, m in zip(params, mask) if m])
        return LoopState(tf.constant(0), params, nontrainable, opt_state,
                         loss, grads, hook_state, loss)

    def _update(self, step, state, increments=False):
        """The optimizer on the masked-in parameters; the rest pass through.
        With ``increments``, also the step each parameter took
        (``InnerOptimizer.update_with_increments``; zeros where held)."""
        mask = self._mask(state.params)
        pick = lambda xs: [v for v, m in zip(xs, mask) if m]  # noqa: E731
        if isinstance(self.step_offset, tf.Tensor):
            step = step + tf.cast(self.step_offset, tf.convert_to_tensor(
                step).dtype)
        elif self.step_offset:
            step = step + self.step_offset
        args = (step, pick(state.grads), pick(state.params), state.opt_state)
        if not increments:
            new, opt_state = self.optimizer.update(*args)
            it = iter(new)
            return ([next(it) if m else t for t, m in zip(state.params, mask)],
                    opt_state)
        new, incs, opt_state = self.optimizer.update_with_increments(*args)
        it, jt = iter(new), iter(incs)
        return ([next(it) if m else t for t, m in zip(state.params, mask)],
                opt_state,
                [next(jt) if m else tf.zeros_like(t)
                 for t, m in zip(state.params, mask)])

    def _segment(self, state, i):
        """theta_{i+1}, the optimizer's state and how to call the hook
        (``d_theta``, the update's increments, for a hook that takes them)."""
        if not getattr(self.hook, "takes_increments", False):
            return (*self._update(i, state), {})
        theta_next, opt_state, incs = self._update(i, state, increments=True)
        return theta_next, opt_state, {"d_theta": incs}

    def next_params(self, state):
        """theta_{i+1}: the parameters update ``state.step`` moves to.

        Args:
          state: a ``LoopState`` (``start``'s or the last ``step``'s).
        """
        return self._update(state.step, state)[0]

    def step(self, state, batch, step=None):
        """Update ``i = state.step`` (or ``step``); loss and gradient at
        theta_{i+1} on ``batch``; the hook's segment ``i``.

        Args:
          state: a ``LoopState`` (``start``'s or the last ``step``'s).
          batch: the batch for ``f(theta_{i+1})``.
          step: the update's index (default ``None``: ``state.step``).
        """
        i = state.step if step is None else step
        theta_next, opt_state, increments = self._segment(state, i)
        loss_next, _, grads_next, nt = value_and_grads(
            self.objective, theta_next, state.nontrainable, batch,
            self._mask(theta_next))
        hook_state = self.hook(state.hook_state, i, state.params, theta_next,
                               state.loss, loss_next, state.grads,
                               **increments)
        return LoopState(i + 1, theta_next, nt, opt_state, loss_next,
                         grads_next, hook_state, state.loss_before)

    def finish(self, state, batch, step=None):
        """The last update and ``f(theta_K)`` (a forward pass only).

        Args:
          state: a ``LoopState`` (``start``'s or the last ``step``'s).
          batch: the batch for ``f(theta_K)``.
          step: the update's index (default ``None``: ``state.step``).
        """
        i = state.step if step is None else step
        theta_last, opt_last, increments = self._segment(state, i)
        loss_last, _, nt = self.objective(theta_last, state.nontrainable, batch)
        hook_state = self.hook(state.hook_state, i, state.params, theta_last,
                               state.loss, loss_last, state.grads,
                               **increments)
        return AdaptResult(theta_last, nt, state.loss_before, loss_last,
                           hook_state, opt_last)


def checkpoint_interval(value):
    """``checkpoint_every`` checked: ``None``, a positive int or ``"sqrt"``.

    Args:
      value: the value given; anything else raises ``ValueError``.
    """
    if value is None or value == "sqrt":
        return value
    if isinstance(value, str):
        raise ValueError(f"checkpoint_every must be a positive integer, "
                         f"'sqrt' or None; got {value!r}.")
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"checkpoint_every must be a positive integer, "
                         f"'sqrt' or None; got {value!r}.")
    return int(value)


def _segments(transitions, every):
    """``(c, m)``: steps per segment and number of segments for
    ``transitions`` loop steps (Python ints when ``transitions`` is static,
    else tensors); ``every="sqrt"`` takes ``c = ceil(sqrt(transitions))``."""
    n = tf.get_static_value(transitions)
    if n is not None:
        n = int(n)
        c = max(1, math.ceil(math.sqrt(n))) if every == "sqrt" else every
        return c, -(-n // c)
    if every == "sqrt":
        c = tf.maximum(1, tf.cast(tf.math.ceil(tf.sqrt(
            tf.cast(transitions, tf.float32))), tf.int32))
    else:
        c = tf.constant(every)
    return c, (transitions + c - 1) // c


def _as_tf_variable(v):
    """The ``tf.Variable`` of a Keras variable (or ``v`` itself)."""
    return v if isinstance(v, tf.Variable) else v.value


def _checkpointed(stepper, state, batch, transitions, every, variables=()):
    """Loop steps ``0 .. transitions - 1`` from ``state`` (the loop of
    ``optimize``) with a checkpointed gradient: the forward pass keeps only
    the state at the start of every segment of ``c`` steps (parameters,
    inner-optimizer state, non-trainables, loss and gradient); the backward
    pass walks the segments in reverse, recomputes each from its checkpoint
    under a tape and backpropagates the cotangent through it. Memory:
    ``m = ceil(transitions / c)`` checkpoints plus one segment's tape
    instead of every step's; time: one more forward pass of the loop.

    A ``tf.custom_gradient`` over the whole loop rather than
    ``tf.recompute_grad`` per segment: ``while_v2`` decides itself which
    intermediates of a differentiated loop it keeps, the hook runs once (in
    the forward pass only; its state is returned as the plain loop computes
    it, not through the custom gradient) and the segments are recomputed
    without it. ``variables`` the loop reads (Meta-SGD's rates, a learned
    step size) get their gradients through the recomputed segments too:
    they are passed as inputs, since ``tf.custom_gradient`` sees only the
    trainable variables a function reads.
    """
    variables = [_as_tf_variable(v) for v in variables]
    c, m = _segments(transitions, every)
    static_c = c if isinstance(c, int) else None
    static_m = m if isinstance(m, int) else None
    plain = Stepper(stepper.objective, stepper.optimizer, stepper.mask)
    hook_state0 = state.hook_state
    template = (state.params, state.nontrainable, state.opt_state,
                state.loss, state.grads)
    floats = [t.dtype.is_floating for t in tf.nest.flatten(template)]

    def pack(flat, step, hook_state):
        params, nt, opt_state, loss, grads = tf.nest.pack_sequence_as(
            template, list(flat))
        return LoopState(step, list(params), list(nt), opt_state, loss,
                         list(grads), hook_state, ())

    def unpack(s):
        return tf.nest.flatten((s.params, s.nontrainable, s.opt_state,
                                s.loss, s.grads))

    def segment(s, start, stp):
        """Steps ``start .. min(start + c, transitions) - 1`` from ``s``."""
        end = tf.minimum(start + c, transitions)
        return tf.while_loop(
            lambda s: s.step < end,
            lambda s: (stp.step(s, batch(s.step + 1)),),
            (s,), maximum_iterations=static_c)[0]

    out = {}

    @tf.custom_gradient
    def loop(*args):
        flat = args[:len(floats)]
        arrays = [tf.TensorArray(t.dtype, size=m, element_shape=t.shape)
                  for t in flat]

        def body(j, s, arrays):
            arrays = [a.write(j, t) for a, t in zip(arrays, unpack(s))]
            return j + 1, segment(s, j * c, stepper), arrays

        _, last, arrays = tf.while_loop(
            lambda j, *_: j < m, body,
            (tf.constant(0), pack(flat, tf.constant(0), hook_state0), arrays),
            maximum_iterations=static_m)
        out["hook_state"] = last.hook_state
        result = unpack(last)

        def grad(*cotangents, variables=None):
            read = list(variables or [])  # trainable ones tf saw read
            variables = explicit + read
            cot = [tf.zeros_like(t) if d is None else d
                   for d, t, f in zip(cotangents, result, floats) if f]
            var_grads = [tf.zeros(v.shape, v.dtype) for v in variables]

            def back(j, cot, var_grads):
                saved = [a.read(j) for a in arrays]
                xs = [t for t, f in zip(saved, floats) if f]
                with tf.GradientTape(watch_accessed_variables=False) as tape:
                    tape.watch(xs)
                    tape.watch(variables)
                    s = segment(pack(saved, j * c, ()), j * c, plain)
                    ys = [t for t, f in zip(unpack(s), floats) if f]
                g = tape.gradient(
                    ys, xs + variables, output_gradients=cot,
                    unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return (j - 1, g[:len(xs)],
                        [a + b for a, b in zip(var_grads, g[len(xs):])])

            # One segment at a time: the recomputations do not depend on
            # the cotangent, so with parallel iterations several would be
            # held at once (measured: half the plain path's memory at K=100).
            _, cot, var_grads = tf.while_loop(
                lambda j, *_: j >= 0, back, (m - 1, cot, var_grads),
                maximum_iterations=static_m, parallel_iterations=1)
            it = iter(cot)
            inputs = [next(it) if f else None for f in floats]
            inputs += var_grads[:len(explicit)]
            return (inputs, var_grads[len(explicit):]) if read else inputs

        return result, grad

    explicit = variables
    flat = loop(*unpack(state), *[tf.convert_to_tensor(v) for v in variables])
    return pack(flat, tf.cast(transitions, tf.int32), out["hook_state"])


def optimize(objective, optimizer, params, nontrainable, data, steps,
             batch_size=None, seed=None, hook=None, hook_state=(), mask=None,
             checkpoint_every=None, variables=(), opt_state=None,
             step_offset=0, sampling="independent", unroll=False):
    """Run ``steps`` updates of ``optimizer`` on ``objective`` in one
    ``tf.while_loop``.

    Args:
      objective: ``objective(params, nontrainable, batch) -> (loss, aux,
        nontrainable)`` (module docstring; ``supervised`` for ``(x, y)``).
      optimizer: a ``tfmeta.inner_optimizers.InnerOptimizer``.
      params: list of tensors, theta_0 (``model.trainable_variables`` order).
      nontrainable: list of tensors, the non-trainable state (batch-norm
        statistics) at the start.
      data: a nested structure of tensors with a leading example axis, from
        which every update draws a minibatch (``sample``), or a callable
        ``i -> batch`` for ``i = 0 .. steps``.
      steps: number of updates ``K >= 1`` (Python int or scalar tensor).
      batch_size: minibatch size, or ``None`` for all of ``data`` each step.
      seed: int tensor of shape ``[2]`` for minibatch draws.
      hook: ``hook(state, i, theta_i, theta_next, loss_i, loss_next, grad_i)
        -> state``, called for every step (default ``None``: no hook).
      hook_state: the hook's initial state, a nested structure of tensors
        (default ``()``).
      mask: one bool per parameter; ``False`` parameters are held fixed
        during adaptation (e.g. WarpGrad's warp layers). Default: all adapt.
      checkpoint_every: ``None`` (default), a positive int ``c`` or
        ``"sqrt"`` (``c = ceil(sqrt(steps - 1))``): differentiate the loop
        through checkpoints every ``c`` steps, recomputing the segments in
        the backward pass (``_checkpointed``); the same gradient with memory
        ~``(steps / c + c)`` inner states instead of ``steps``. The hook
        runs in the forward pass only; its state is the plain loop's.
      variables: with ``checkpoint_every``, the variables the loop reads
        whose gradients are wanted (``Adaptation.step_size``: Meta-SGD's
        rates, a learned step size).
      opt_state: the optimizer's state to start from (default ``None``: a
        fresh ``optimizer.init``); e.g. a state carried over from earlier
        tasks (Reptile section 5.1: the inner Adam's moments are never reset
        during meta-training).
      step_offset: added to the update index the optimizer sees (default 0),
        so that a carried Adam's bias correction and a schedule count on
        from the updates before (an int or a scalar integer tensor).
      sampling: how minibatches are drawn from ``data``, one of
        ``SAMPLINGS`` (default ``"independent"``).
      unroll: with a static ``steps`` and no ``checkpoint_every``, the
        updates as straight-line code instead of a ``tf.while_loop``
        (default ``False``): the same path, and a graph that
        ``tf.vectorized_map`` can batch through its gradient under XLA
        (second-order MAML with ``vectorize_tasks``; a differentiated loop
        there makes nested TensorLists that XLA cannot compile).

    Returns:
      ``AdaptResult(params, nontrainable, loss_before, loss_after,
      hook_state, opt_state)`` with ``loss_before = f(theta_0)``,
      ``loss_after = f(theta_K)`` and the optimizer's state after update K.
    """
    if seed is None:
        seed = tf.constant([0, 0], tf.int64)
    stepper = Stepper(objective, optimizer, mask, hook, step_offset)
    batch = data if callable(data) else samplers(data, batch_size, seed, steps,
                                                 sampling)
    state = stepper.start(params, nontrainable, batch(0), hook_state,
                          opt_state)
    # Steps 0 .. K-2 in the loop; the last one is peeled off below so that
    # f(theta_K) costs a forward pass only.
    # A static bound lets XLA differentiate through the loop (second-order
    # MAML under ``jit_compile=True`` needs fixed-size gradient accumulators).
    # (``loss_before`` stays out of the loop: a loop variable costs ops.)
    checkpoint_every = checkpoint_interval(checkpoint_every)
    k = tf.get_static_value(steps)
    loss0 = state.loss_before
    if checkpoint_every is not None:
        state = _checkpointed(
            stepper, state._replace(loss_before=()), batch,
            tf.maximum(tf.cast(steps, tf.int32) - 1, 0) if k is None
            else max(int(k) - 1, 0), checkpoint_every, variables)
    elif unroll and k is not None:
        state = state._replace(loss_before=())
        for _ in range(max(int(k) - 1, 0)):
            state = stepper.step(state, batch(state.step + 1))
    else:
        state = tf.while_loop(
            lambda s: s.step < steps - 1,
            lambda s: (stepper.step(s, batch(s.step + 1)),),
            (state._replace(loss_before=()),),
            maximum_iterations=None if k is None else max(int(k) - 1, 0))[0]
    # The loop ends at i = max(steps - 1, 0), computed from ``steps`` rather
    # than taken from the loop's output: with the loop's counter feeding the
    # last step, XLA recompiled a ``vectorize_tasks`` meta-step on every call
    # (1.3 s per sine meta-step instead of ~5 ms; docs/performance.md).
    i = tf.maximum(tf.cast(steps, tf.int32) - 1, 0)
    return stepper.finish(state._replace(loss_before=loss0), batch(i + 1),
                          step=i)


def adapt(model, loss_fn, optimizer, params, nontrainable, x, y, steps,
          batch_size=None, seed=None, hook=None, hook_state=(), mask=None,
          checkpoint_every=None, opt_state=None, step_offset=0,
          sampling="independent"):
    """``optimize`` on the supervised objective of ``model`` and ``loss_fn``
    with support data ``(x, y)``.

    Args:
      model: the task learner (a Keras model; called with
        ``stateless_call``, its variables are not touched).
      loss_fn: ``loss_fn(y_true, y_pred)``, e.g. ``keras.losses.get("mse")``.
      optimizer: a ``tfmeta.inner_optimizers.InnerOptimizer``.
      params: list of tensors in ``model.trainable_variables`` order.
      nontrainable: list of tensors in ``model.non_trainable_variables``
        order (batch-norm statistics).
      x: support inputs ``[N, ...]``.
      y: support targets ``[N, ...]``.
      steps: number of updates ``K >= 1``.
      batch_size: minibatch size (default ``None``: the full split).
      seed: int tensor ``[2]`` for minibatch draws (default ``None``:
        ``[0, 0]``).
      hook: as in ``optimize`` (default ``None``).
      hook_state: the hook's initial state (default ``()``).
      mask: one bool per parameter (default ``None``: all adapt).
      checkpoint_every: as in ``optimize`` (default ``None``).
      opt_state: as in ``optimize`` (default ``None``: a fresh optimizer).
      step_offset: as in ``optimize`` (default 0).
      sampling: as in ``optimize`` (default ``"independent"``).

    Returns:
      ``AdaptResult`` as ``optimize``.
    """
    return optimize(supervised(model, loss_fn), optimizer, params,
                    nontrainable, (x, y), steps, batch_size=batch_size,
                    seed=seed, hook=hook, hook_state=hook_state, mask=mask,
                    checkpoint_every=checkpoint_every, opt_state=opt_state,
                    step_offset=step_offset, sampling=sampling)
