"""WarpGrad's three meta-training algorithms, one strategy each: what a
meta-step of ``WarpGrad`` does (``WarpGrad.meta_step`` delegates here).

* ``Online`` (Algorithm 1): the warp gradient of every iterate theta_k,
  k = 0..K-1, accumulated while the task trains; one outer step.
* ``Offline`` (Algorithm 2): the iterates go to a replay buffer, then one
  outer step per ``replay_batch_size`` entries drawn without replacement.
* ``Continual`` (Algorithm 3): no task resets; theta takes the multi-task
  loss gradient every meta-step, phi the accumulated warp gradients every
  ``replay_batch_size`` meta-steps.

All apply through ``MetaLearner.apply_if_finite``: one ``optimizer.apply``
per outer step (Keras's ``iterations`` counts them), skipped when not finite,
``grad_norm`` logged.
"""

import contextlib

import numpy as np
import tensorflow as tf

from tfmeta import inner_loop
from tfmeta.meta_learner import TASK_KEYS, MetaLearner, MetaStep


def _single_replica(mode):
    """Offline steps apply the optimizer inside a loop, which
    ``tf.distribute`` cannot synchronize: refuse (``WarpGrad.compile``
    refuses it under a strategy first)."""
    context = tf.distribute.get_replica_context()
    if context is not None and context.num_replicas_in_sync > 1:
        raise ValueError(
            f"meta_training={mode!r} runs on one replica only: its outer "
            "steps sit in a loop or a condition, where tf.distribute cannot "
            "synchronize an optimizer update. Use meta_training='online' "
            "or 'continual' under a distribution strategy.")


class Online:
    """Algorithm 1: ``MetaLearner``'s meta-step over ``task_meta_gradient``
    (the mean over k of the warp gradient at theta_k, plus lambda times the
    initialization's gradient).

    Args:
      meta: the ``WarpGrad`` meta-learner the strategy steps.
    """

    xla_unsupported = None

    def __init__(self, meta):
        self.meta = meta

    def meta_step(self, tasks):
        return MetaLearner.meta_step(self.meta, tasks)

    def apply(self, grads):
        self.meta.optimizer.apply(grads, self.meta.meta_variables)


class Offline(Online):
    """Algorithm 2, lines 13-23: collect the buffer of the task batch, then
    one outer step per ``replay_batch_size`` entries.

    A replay update that is not finite ends the meta-step and every update
    of it is undone (meta-parameters, ``task_lr`` and the outer optimizer's
    state restored from before the meta-step), so ``NonFiniteLossError``
    leaves the weights of the last finite meta-step.

    Args:
      meta: the ``WarpGrad`` meta-learner the strategy steps.
    """

    xla_unsupported = (
        "meta_training='offline' has a replay buffer whose size is only "
        "known when the meta-step runs. Use meta_training='online' or "
        "'continual' with XLA, or offline without it.")

    def _state_variables(self):
        meta = self.meta
        extra = [meta.task_lr] if meta.learn_task_lr else []
        return list(meta.meta_variables) + extra + list(meta.optimizer.variables)

    def meta_step(self, tasks):
        _single_replica("offline")
        meta = self.meta
        tasks = {k: tasks[k] for k in TASK_KEYS}
        params, nontrainable = meta.current_state()
        buffer, (loss, support_loss, length), preds = meta.collect_graph(
            tasks, params, nontrainable)
        saved = [tf.identity(v) for v in self._state_variables()]
        size = tf.shape(buffer["step"])[0]
        num_tasks = tf.cast(tf.shape(tasks["support_x"])[0], params[0].dtype)
        order = tf.argsort(tf.random.stateless_uniform(
            [size], tf.cast(meta.seed_generator.next(), tf.int64)))
        eta = meta.replay_batch_size
        updates = (size + eta - 1) // eta

        def body(u, meta_loss, finite):
            indices = order[u * eta:(u + 1) * eta]
            params, _ = meta.current_state()
            phi = meta.outer_params(params)
            warp_grads, ml, init = meta.replay_gradient(
                tasks, buffer, indices, phi, nontrainable)
            grads = meta.meta_grads(warp_grads, [g / num_tasks for g in init])
            reported = tf.cast(meta.apply_if_finite(grads, ml), tf.float32)
            return (u + 1, meta_loss + reported,
                    tf.logical_and(finite, tf.math.is_finite(reported)))

        done, meta_loss, finite = tf.while_loop(
            lambda u, _, finite: tf.logical_and(u < updates, finite), body,
            (tf.constant(0), tf.zeros([], tf.float32), tf.constant(True)))
        with tf.control_dependencies([finite]):
            for var, value in zip(self._state_variables(), saved):
                var.assign(tf.where(finite, tf.convert_to_tensor(var), value))
        logs = {"loss": tf.where(finite, tf.reduce_mean(loss), np.nan),
                "support_loss": tf.reduce_mean(support_loss),
                "meta_loss": meta_loss / tf.cast(done, tf.float32),
                "path_length": tf.reduce_mean(length)}
        return MetaStep(logs, preds)


class Continual(Online):
    """Algorithm 3: theta <- theta - lambda beta g_theta every meta-step;
    g_phi accumulated (``warp_accumulators``, ``warp_count``), phi <- phi -
    beta g_phi / eta every eta meta-steps, in the same single outer step.

    Args:
      meta: the ``WarpGrad`` meta-learner the strategy steps.
    """

    def meta_step(self, tasks):
        meta = self.meta
        params, nontrainable = meta.current_state()

        def one(task, seed):
            grads, logs, pred = self.task_gradients(
                params, nontrainable, task, seed)
            return (grads, logs), pred

        (grads, logs), preds = meta.over_tasks(one, tasks)
        theta, phi = meta.split(grads)
        grads = meta.merge([meta.init_weight * g for g in theta], phi)
        logs["loss"] = meta.apply_if_finite(grads, logs["loss"],
                                            tf.shape(tasks["support_x"])[0])
        return MetaStep(logs, preds)

    def task_gradients(self, params, nontrainable, task, seed):
        """One task at the current theta: grad_phi L(phi; theta) (eq. 11/12,
        one step from theta on a support minibatch) and grad_theta of the
        task loss (C_multi), merged into one list."""
        meta = self.meta
        theta, phi = meta.split(params)
        zeros = [tf.zeros_like(t) for t in theta]
        warp_grads, meta_loss = meta.warp_gradient(
            phi, nontrainable, theta, zeros, tf.constant(0), task, seed)
        batch = inner_loop.minibatch(task["support_x"], task["support_y"],
                                     meta.inner_batch_size, seed, 0)
        loss, _, grads, _ = inner_loop.value_and_grads(
            meta.task_objective(), params, nontrainable, batch,
            mask=meta.task_mask)
        query, pred = meta.query_loss(params, nontrainable, task)
        logs = {"loss": query, "support_loss": loss, "meta_loss": meta_loss}
        return meta.merge(meta.split(grads)[0], warp_grads), logs, pred

    def apply(self, grads):
        """One ``optimizer.apply``: the task variables, plus the warp
        variables with the mean accumulated g_phi on every eta-th call
        (on the other calls the warp variables and their optimizer state
        are left as they are: ``updates_only_if``, no condition around the
        optimizer, which tf.distribute could not synchronize)."""
        meta = self.meta
        theta_grads, phi_grads = meta.split(grads)
        for acc, g in zip(meta.warp_accumulators, phi_grads):
            acc.assign_add(g)
        meta.warp_count.assign_add(1)
        warp = meta.warp_count >= meta.replay_batch_size
        eta = tf.cast(meta.warp_count, theta_grads[0].dtype)
        mean = [tf.where(warp, a / eta, tf.zeros_like(a))
                for a in meta.warp_accumulators]
        with updates_only_if(meta.optimizer, meta.warp_variables, warp):
            # (tf.identity: all gradients from this graph, which is a
            # tf.cond branch on one device; Keras refuses a mix of graphs)
            meta.optimizer.apply([tf.identity(g) for g in theta_grads] + mean,
                                 meta.task_variables + meta.warp_variables)
        for acc in meta.warp_accumulators:
            acc.assign(tf.where(warp, tf.zeros_like(acc), acc))
        meta.warp_count.assign(tf.where(
            warp, tf.zeros([], meta.warp_count.dtype), meta.warp_count))


@contextlib.contextmanager
def updates_only_if(optimizer, variables, condition):
    """While the block runs, ``optimizer`` updates ``variables`` (and their
    optimizer state) only where ``condition`` holds: a condition inside each
    variable's own update, where no replicas need to meet, so an
    ``optimizer.apply`` with it runs under ``tf.distribute`` too. The
    optimizer's ``iterations`` counts the call either way.

    Args:
      optimizer: a Keras optimizer (its ``update_step`` is wrapped while
        the block runs).
      variables: the variables whose updates the condition gates.
      condition: a scalar bool tensor.
    """
    keys = {optimizer._var_key(v) for v in variables}
    update_step = optimizer.update_step

    def maybe_update(grad, variable, learning_rate):
        if optimizer._var_key(variable) not in keys:
            return update_step(grad, variable, learning_rate)

        def update():
            update_step(grad, variable, learning_rate)
            return tf.constant(True)

        tf.cond(condition, update, lambda: tf.constant(False))

    # (an instance attribute shadows the method; Keras's tracking
    # __setattr__ is bypassed)
    vars(optimizer)["update_step"] = maybe_update
    try:
        yield
    finally:
        vars(optimizer).pop("update_step", None)


STRATEGIES = {"online": Online, "offline": Offline, "continual": Continual}
"""The strategy class of each ``meta_training`` name."""
