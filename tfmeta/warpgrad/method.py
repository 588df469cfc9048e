"""``WarpGrad``: the meta-learner of warp layers (eq. 11/12), with one
strategy per meta-training algorithm (``strategies``) and a pluggable
initialization term (``init_terms``)."""

import keras
import numpy as np
import tensorflow as tf

from tfmeta import inner_loop, leap, registry
from tfmeta.checks import positive_int
from tfmeta.maml import SECOND_ORDER_GRAPH_OPTIONS
from tfmeta.meta_learner import MetaLearner
from tfmeta.warpgrad import buffer as replay_buffer
from tfmeta.warpgrad import init_terms, step_size, trajectory
from tfmeta.warpgrad.objective import (
    gradient_coefficient, loss_dtype, sample_batches, warp_gradient)
from tfmeta.warpgrad.partition import check_warp_shapes, partition
from tfmeta.warpgrad.strategies import STRATEGIES

OBJECTIVES = ("full", "approximate")
"""The ``objective`` choices: ``"full"`` (eq. 11), ``"approximate"``
(eq. 12)."""
META_TRAINING = ("online", "offline", "continual")
"""The ``meta_training`` choices: Algorithms 1-3 (``strategies``)."""
INITIALIZATIONS = (None, "leap", "maml")
"""The ``initialization`` choices: ``None`` (fixed), ``"leap"``, ``"maml"``."""


@registry.register("warpgrad", "WarpGrad: meta-learned warp layers "
                               "(learner with tfmeta.layers warp layers)",
                   cli=False)
class WarpGrad(MetaLearner):
    """WarpGrad: meta-learns the warp layers of ``learner`` (eq. 11/12).

    Args:
      learner: a built Keras model with at least one ``WarpLayer`` (see
        ``tfmeta.layers.warped_sequential``) and at least one task layer.
      objective: ``"full"`` (eq. 11: second order through the task step; the
        default) or ``"approximate"`` (eq. 12: stop-gradient on the task
        update).
      meta_training: ``"online"`` (the default; Algorithm 1: the warp
        gradient of every iterate theta_k, k = 0..K-1, accumulated while the
        task trains, one outer step per meta-batch) or ``"offline"``
        (Algorithm 2: the iterates go to a replay buffer, then one outer
        step per ``replay_batch_size`` buffer entries, drawn without
        replacement).
        ``"continual"`` (Algorithm 3: no task resets; the task parameters
        theta are trained continually by ``init_weight`` times the multi-task
        loss gradient every step, and phi every ``replay_batch_size`` steps
        with the warp gradient at the theta of each step, accumulated).
        In continual mode theta moves by the *outer* optimizer, while the
        task step inside L_meta is the inner SGD's (lr alpha): with an SGD
        outer optimizer of lr beta, alpha = ``init_weight`` x beta makes
        the two the same step; with Adam, a small alpha (theta' ~ theta)
        matches its small steps better than a large one
        (``experiments/warpgrad_rnn.py``).
      replay_batch_size: eta of Algorithm 2 (default 1); in continual mode,
        the number of steps between warp updates.
      initialization: ``None`` (the default: task parameters start from
        the learner's fixed initialization; only phi is meta-learned),
        ``"leap"`` (Warp-Leap, eq. 15-17) or ``"maml"`` (Warp-MAML, eq. 14:
        the MAML gradient through the warped adaptation, phi held fixed;
        our reading of the paper's
        "C_MAML = L_MAML under the constraint P = I").
      init_weight: lambda of eq. 13, >= 0 (default 1.0); the
        initialization's gradient is scaled by it (Algorithm 1, line 14).
      leap_metric: Warp-Leap's metric, ``"length"`` (default) or
        ``"energy"`` (``tfmeta.Leap``'s ``metric``).
      loss_in_manifold: Warp-Leap: include the loss in the task manifold
        (default ``True``; ``tfmeta.Leap``).
      stabilizer: Warp-Leap: use ``-|df_i|`` (default ``True``;
        ``tfmeta.Leap``).
      learn_task_lr: meta-learn the task learning rate alpha (appendix F,
        table 3 "learned alpha"): a single scalar variable ``task_lr``,
        initialized at the inner SGD's (constant) learning rate, used by
        every task step (``fit``, ``adapt``, ``evaluate``, ``evaluate_tasks``
        and the exported ``adapt``). Its meta-gradient is ``dL/d alpha`` of
        eq. 11 through the one warped step ``theta_k + m_k - c alpha grad
        L_task(theta_k; phi)``, averaged like phi's (offline: the replayed
        step uses the current alpha with the stored theta_k and m_k). It is
        clipped to ``[-task_lr_clip, task_lr_clip]`` and applied by its own
        plain SGD step ``alpha -= task_lr_learning_rate * clip(g)`` (the
        paper: "meta-gradients for the learning rate are clipped at 0.001
        and we use a learning rate of 0.001"), not by the outer optimizer,
        in the same finite-or-skip meta-step as phi. Needs a Keras SGD inner
        optimizer with a constant learning rate and ``objective="full"``
        (eq. 12 stops the gradient through the task step, so alpha would
        get none), online or offline meta-training. Reported in the History
        as ``task_lr``; saved with the meta-learner's weights
        (checkpoints, ``tfmeta.load``). Default ``False``.
      task_lr_learning_rate: the SGD step size of alpha's own update
        (default 0.001, the paper's).
      task_lr_clip: alpha's meta-gradient is clipped to
        ``[-task_lr_clip, task_lr_clip]`` (default 0.001, the paper's).
      checkpoint_every: Warp-MAML only: ``None`` (default), a positive int
        or ``"sqrt"``, the checkpointed gradient through the inner loop of
        ``tfmeta.MAML`` (the same gradient, less memory).
      **kwargs: the ``tfmeta.MetaLearner`` arguments (``inner_optimizer``,
        ``inner_steps``, ``eval_steps``, ``inner_batch_size``,
        ``parallel_tasks``, ``vectorize_tasks``, ``seed``, ``name``).

    L_task is the task loss on support minibatch k (the step the task took);
    L_meta is the same loss on a query minibatch (appendix E: different
    batches of task data), in training mode. The one task step inside L_meta
    is the inner optimizer's: with Keras SGD (plain, momentum or Nesterov)
    it is recomputed as ``theta_k + m_k - c grad L_task(theta_k; phi)`` with
    the stored momentum term ``m_k`` (appendix F) and ``c`` the coefficient of
    the gradient; other inner optimizers support the approximate objective
    only, with the stored ``theta_{k+1}``.
    """

    def __init__(self, learner, objective="full", meta_training="online",
                 replay_batch_size=1, initialization=None, init_weight=1.0,
                 leap_metric="length", loss_in_manifold=True, stabilizer=True,
                 learn_task_lr=False, task_lr_learning_rate=0.001,
                 task_lr_clip=0.001, checkpoint_every=None, **kwargs):
        for name, value, known in (
                ("WarpGrad objective", objective, OBJECTIVES),
                ("meta_training", meta_training, META_TRAINING),
                ("initialization", initialization, INITIALIZATIONS)):
            if value not in known:
                raise ValueError(f"Unknown {name} {value!r}; use one of "
                                 f"{list(known)}.")
        leap.check_metric(leap_metric)
        if init_weight < 0:
            raise ValueError(f"init_weight must be >= 0, got {init_weight}.")
        checkpoint_every = inner_loop.checkpoint_interval(checkpoint_every)
        if checkpoint_every is not None and initialization != "maml":
            raise ValueError(
                "checkpoint_every applies to Warp-MAML (initialization="
                "'maml'), the one WarpGrad variant that differentiates "
                f"through the inner loop; got initialization={initialization!r}.")
        super().__init__(learner, **kwargs)
        self.checkpoint_every = checkpoint_every
        check_warp_shapes(learner)
        task_vars, warp_vars = partition(learner)
        if not warp_vars:
            raise ValueError(
                "WarpGrad needs a learner with warp layers (tfmeta.layers."
                "WarpLayer, tfmeta.layers.warp(...) or warped_sequential); "
                f"{learner.name!r} has none with trainable variables.")
        if not task_vars:
            raise ValueError(f"{learner.name!r} has only warp parameters; "
                             "WarpGrad needs task layers to adapt.")
        warp_ids = {id(v) for v in warp_vars}
        self.task_mask = [id(v) not in warp_ids
                          for v in learner.trainable_variables]
        self.task_indices = [j for j, m in enumerate(self.task_mask) if m]
        self.warp_indices = [j for j, m in enumerate(self.task_mask) if not m]
        self.objective = objective
        self.meta_training = meta_training
        self.replay_batch_size = positive_int("replay_batch_size",
                                              replay_batch_size)
        if meta_training == "continual" and initialization is not None:
            raise ValueError(
                "meta_training='continual' (Algorithm 3) trains the task "
                "parameters with the multi-task loss itself; leave "
                f"initialization=None (got {initialization!r}).")
        if meta_training == "offline" and self.vectorize_tasks:
            raise ValueError(
                "meta_training='offline' with vectorize_tasks=True: the "
                "replay buffer's per-step records (TensorArrays) cannot be "
                "vectorized over tasks. Use vectorize_tasks=False, or online "
                "meta-training.")
        self.initialization = initialization
        self.init_weight = float(init_weight)
        self.metric, self.loss_in_manifold = leap_metric, bool(loss_in_manifold)
        self.stabilizer = bool(stabilizer)
        self.init_term = init_terms.make(
            initialization, metric=leap_metric,
            loss_in_manifold=self.loss_in_manifold, stabilizer=self.stabilizer)
        self.grad_coef = gradient_coefficient(self.inner_update, objective,
                                              meta_training)
        self.learn_task_lr = bool(learn_task_lr)
        self.task_lr_learning_rate = float(task_lr_learning_rate)
        self.task_lr_clip = float(task_lr_clip)
        if self.learn_task_lr:
            self.task_lr, self.inner_update = step_size.create(self)
            self.task_lr_value = step_size.Value(self.task_lr)
        self.meta_loss_tracker = keras.metrics.Mean(name="meta_loss")
        self._config = dict(
            objective=objective, meta_training=meta_training,
            replay_batch_size=self.replay_batch_size,
            initialization=initialization, init_weight=self.init_weight,
            leap_metric=leap_metric, loss_in_manifold=self.loss_in_manifold,
            stabilizer=self.stabilizer, learn_task_lr=self.learn_task_lr,
            task_lr_learning_rate=self.task_lr_learning_rate,
            task_lr_clip=self.task_lr_clip, checkpoint_every=checkpoint_every)
        if initialization == "leap":
            self.path_length_tracker = keras.metrics.Mean(name="path_length")
        self._collect_function = None
        self._objective_function = None
        if meta_training == "continual":  # Algorithm 3's g_phi and i
            # (updated in the replica context under tf.distribute, with the
            # same all-reduced values on every replica)
            self.warp_accumulators = [
                self.add_weight(shape=v.shape, initializer="zeros",
                                dtype=v.dtype, trainable=False,
                                name=f"warp_grad_{n}",
                                aggregation="only_first_replica")
                for n, v in enumerate(self.warp_variables)]
            self.warp_count = self.add_weight(
                shape=(), initializer="zeros", dtype="int64",
                trainable=False, name="warp_count",
                aggregation="only_first_replica")
        self.strategy = STRATEGIES[meta_training](self)

    # ------------------------------------------------------- Keras / base
    def xla_unsupported(self):
        return self.strategy.xla_unsupported or super().xla_unsupported()

    def distribution_unsupported(self):
        if self.meta_training == "offline":
            return ("meta_training='offline' (Algorithm 2) takes one outer "
                    "step per replay batch inside the meta-step's loop over "
                    "its buffer, where tf.distribute cannot synchronize an "
                    "optimizer update; and the buffer of a meta-batch split "
                    "over replicas would replay only each replica's own "
                    "tasks. Use meta_training='online' or 'continual'.")
        return super().distribution_unsupported()

    def graph_options(self):
        if self.initialization == "maml":  # second order, as MAML
            return dict(SECOND_ORDER_GRAPH_OPTIONS)
        return {}

    def get_config(self):
        """Constructor arguments, for ``tfmeta.load`` of an export."""
        return dict(super().get_config(), **self._config)

    @property
    def task_variables(self):
        return [self.learner.trainable_variables[j] for j in self.task_indices]

    @property
    def warp_variables(self):
        return [self.learner.trainable_variables[j] for j in self.warp_indices]

    @property
    def meta_variables(self):
        """phi, plus the initialization theta_0 with Warp-Leap/Warp-MAML."""
        if self.initialization is None and self.meta_training != "continual":
            return self.warp_variables
        return self.learner.trainable_variables

    def extra_metrics(self):
        metrics = {"meta_loss": self.meta_loss_tracker}
        if self.initialization == "leap":
            metrics["path_length"] = self.path_length_tracker
        return metrics

    def meta_step(self, tasks):
        """The strategy's meta-step (``tfmeta.warpgrad.strategies``)."""
        return self.strategy.meta_step(tasks)

    def apply_meta_gradient(self, grads):
        """The strategy's outer step; with ``learn_task_lr`` the last
        gradient is alpha's: clipped and applied by its own SGD step."""
        if not self.learn_task_lr:
            return self.strategy.apply(grads)
        self.strategy.apply(list(grads[:-1]))
        step_size.apply(self, grads[-1])

    def update_metrics(self, logs, targets, preds, extra=True):
        results = super().update_metrics(logs, targets, preds, extra)
        if self.learn_task_lr:  # the value after this meta-step
            results["task_lr"] = self.task_lr_value.result()
        return results

    # ----------------------------------------- task/warp parameter lists
    def split(self, params):
        """``(theta, phi)``: task and warp entries of a learner-ordered list.

        Args:
          params: a list in the learner's ``trainable_variables`` order.
        """
        return ([params[j] for j in self.task_indices],
                [params[j] for j in self.warp_indices])

    def merge(self, theta, phi):
        """The learner-ordered list of task entries ``theta`` and warp
        entries ``phi`` (extra entries of ``phi``, alpha, ignored).

        Args:
          theta: the task entries (``task_variables`` order).
          phi: the warp entries (``warp_variables`` order; alpha may follow).
        """
        full = [None] * len(self.task_mask)
        for j, t in zip(self.task_indices, theta):
            full[j] = t
        for j, p in zip(self.warp_indices, phi):
            full[j] = p
        return full

    def outer_params(self, params):
        """The arguments of L (eq. 11): phi, then alpha with
        ``learn_task_lr`` (the current value of ``task_lr``).

        Args:
          params: the learner's parameters (``trainable_variables`` order).
        """
        phi = self.split(params)[1]
        if self.learn_task_lr:
            phi.append(tf.convert_to_tensor(self.task_lr))
        return phi

    def meta_grads(self, warp_grads, init_grads):
        """Gradient list aligned with ``meta_variables`` (then alpha's, with
        ``learn_task_lr``).

        Args:
          warp_grads: gradients aligned with ``outer_params`` (phi, then
            alpha).
          init_grads: the initialization term's gradients for the task entries
            (ignored without an ``initialization``).
        """
        warp_grads = list(warp_grads)
        extra = [warp_grads.pop()] if self.learn_task_lr else []
        if self.initialization is None:
            return warp_grads + extra
        lam = self.init_weight
        return self.merge([lam * g for g in init_grads], warp_grads) + extra

    # ------------------------------------------------ warp meta-gradient
    def warp_gradient(self, phi, nontrainable, theta, carry, step, task,
                      seed):
        """grad_phi L_meta(theta' ; phi) at one sampled iterate (eq. 11/12;
        ``tfmeta.warpgrad.warp_gradient`` with this learner's task loss).
        Returns ``(grads aligned with phi, L_meta)``.

        Args:
          phi: ``outer_params`` (phi, then alpha with ``learn_task_lr``).
          nontrainable: the learner's non-trainable state tensors.
          theta: task parameters theta_k.
          carry: the momentum term m_k (SGD) or theta_{k+1} (other
            optimizers).
          step: the iterate's index k.
          task: the task (dict of the task keys).
          seed: the task's stateless ``[2]`` seed.
        """
        batch, meta_batch = sample_batches(task, self.inner_batch_size, seed,
                                           step)
        lr_of = None
        if self.grad_coef is not None:
            def lr_of(phi):
                if self.learn_task_lr:  # alpha, differentiated (eq. 11)
                    lr = tf.cast(phi[-1], theta[0].dtype)
                else:
                    lr = self.inner_update.lr(step, theta[0].dtype)
                return lr * self.grad_coef
        return warp_gradient(
            self.task_objective(), self.merge, phi, nontrainable, theta,
            carry, batch, meta_batch, step_size=lr_of,
            approximate=self.objective == "approximate")

    def carry(self, step, theta, theta_next, grads):
        """What a sample stores besides theta_k (task entries): the momentum
        term ``theta_{k+1} - theta_k + c alpha g_k`` (SGD), else
        theta_{k+1}.

        Args:
          step: the update's index k.
          theta: all learner parameters at theta_k.
          theta_next: all learner parameters at theta_{k+1}.
          grads: the gradient at theta_k (all parameters).
        """
        theta_next = self.split(theta_next)[0]
        if self.grad_coef is None:
            return theta_next
        lr = self.inner_update.lr(step, theta[0].dtype) * self.grad_coef
        return [b - a + lr * g for a, b, g in zip(
            self.split(theta)[0], theta_next, self.split(grads)[0])]

    def run_task(self, params, nontrainable, task, seed, record):
        """``tfmeta.warpgrad.trajectory.run_task`` of this meta-learner.

        Args:
          params: the learner's parameters at the start.
          nontrainable: its non-trainable state.
          task: the task (dict of the task keys).
          seed: the task's stateless ``[2]`` seed.
          record: ``True`` writes the iterates for the replay buffer
            (Algorithm 2); ``False`` accumulates the warp gradient online
            (Algorithm 1).
        """
        return trajectory.run_task(self, params, nontrainable, task, seed,
                                   record)

    def task_meta_gradient(self, params, nontrainable, task, seed):
        """Algorithm 1 for one task: the mean over k of the warp gradient at
        theta_k, plus lambda times the initialization's gradient."""
        result, init_grad, length, loss, pred = self.run_task(
            params, nontrainable, task, seed, record=False)
        acc, meta_loss, _ = result.hook_state
        k = tf.cast(self.inner_steps, acc[0].dtype)
        logs = {"loss": loss, "support_loss": result.loss_after,
                "meta_loss": meta_loss / self.inner_steps}
        if self.initialization == "leap":
            logs["path_length"] = length
        return self.meta_grads([a / k for a in acc], init_grad), logs, pred

    # -------------------------------------------------- offline (Alg. 2)
    def collect_graph(self, tasks, params, nontrainable):
        """``tfmeta.warpgrad.trajectory.collect`` of this meta-learner.

        Args:
          tasks: a checked task batch.
          params: the learner's parameters at the start.
          nontrainable: its non-trainable state.
        """
        return trajectory.collect(self, tasks, params, nontrainable)

    def replay_gradient(self, tasks, buffer, indices, phi, nontrainable):
        """Mean warp gradient and L_meta over buffer ``indices``; the sum of
        their initialization increments.

        Args:
          tasks: the task batch the buffer was collected from.
          buffer: the replay buffer (tensors).
          indices: the entries to replay.
          phi: ``outer_params``.
          nontrainable: the learner's non-trainable state tensors.
        """
        def sample(theta, carry, step, task, seed):
            return self.warp_gradient(phi, nontrainable, theta, carry, step,
                                      task, seed)

        return replay_buffer.replay(buffer, tasks, indices, sample, phi,
                                    loss_dtype(phi[0].dtype))

    # ------------------------------------------------ inspection (tests)
    def collect(self, tasks):
        """Algorithm 2's replay buffer for one task batch, as NumPy arrays
        (``tfmeta.warpgrad.buffer``), entries ordered task-major.

        Args:
          tasks: one task batch (dict of ``[B, ...]`` arrays or tensors).
        """
        tasks = self.task_batch(tasks)
        if self._collect_function is None:
            self._collect_function = tf.function(
                lambda t: self.collect_graph(t, *self.current_state())[0],
                reduce_retracing=True)
        return tf.nest.map_structure(lambda t: t.numpy(),
                                     self._collect_function(tasks))

    def warp_objective(self, tasks, buffer, indices=None):
        """``(L(phi), grad_phi L(phi))`` of eq. 11 (or 12) at the current
        warp parameters, averaged over buffer ``indices`` (default: all),
        with the stored iterates held fixed. With ``learn_task_lr`` the
        gradient list ends with ``dL/d alpha`` at the current ``task_lr``.

        Args:
          tasks: the task batch the buffer was collected from.
          buffer: its replay buffer (``collect``).
          indices: buffer entries to average over (default ``None``: all).
        """
        tasks = self.task_batch(tasks)
        buffer = tf.nest.map_structure(tf.convert_to_tensor, buffer)
        if indices is None:
            indices = np.arange(len(buffer["step"]))
        if self._objective_function is None:
            def fn(t, b, i):
                params, nontrainable = self.current_state()
                grads, loss, _ = self.replay_gradient(
                    t, b, i, self.outer_params(params), nontrainable)
                return loss, grads
            self._objective_function = tf.function(fn, reduce_retracing=True)
        loss, grads = self._objective_function(
            tasks, buffer, tf.constant(indices, tf.int32))
        return float(loss), [g.numpy() for g in grads]
